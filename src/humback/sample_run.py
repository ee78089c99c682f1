"""`humback plan --measure`: every stage run here on a few sample rows, timed, to extrapolate from.

The run's own models (M_yx, M_{t-1}) do not exist before the run. M_yx's stand-in is the base model after
the plan's few timed training steps, trained backward on the seed as M_yx is: what it writes is nearer to
M_yx's than the base model's (on the real web pages the base model wrote instructions 2.4x as long as
M_yx's, and three quarters of them failed the curation gates, against a quarter of M_yx's). The judge's
stand-in is the base model (same architecture, so the same speed). A role with its own model (an external
judge or rewriter) runs that model, an OpenAI-compatible one included (a few real requests: their latency
is measured). Nothing goes through the response cache: a cached reply would time nothing. Everything is
written in a temporary folder of its own and removed.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from humback.config import RunConfig
from humback.records import read_jsonl, write_jsonl


def _write(path: Path, rows: list[dict]) -> Path:
    write_jsonl(path, rows)
    return path


def _role(cfg: RunConfig, role: str, cache: Path, stand_in: Path | None = None):
    """The role's runner, the seconds it took to load, and its engine. The run's own model (M_yx, M_{t-1})
    is a new checkpoint each stage, which an engine converts once (OpenVINO, CTranslate2): loaded here
    through an empty converted-model cache, so that conversion is timed too; `stand_in` is the model that
    runs for it."""
    from humback.generation import open_generator
    from humback.models import resolve_model
    from humback.rowloop import LocalRunner

    engine = cfg.generation.role(role)
    model = engine.model or str(stand_in or resolve_model(cfg.model))
    before = os.environ.get("HUMBACK_CACHE")
    if engine.model is None and role in ("backward", "judge"):  # the rewriter's default is the base model
        os.environ["HUMBACK_CACHE"] = str(cache / role)
    try:
        start = time.perf_counter()
        gen = open_generator(engine, model, None)
        return LocalRunner(gen), time.perf_counter() - start, engine
    finally:
        if before is None:
            os.environ.pop("HUMBACK_CACHE", None)
        else:
            os.environ["HUMBACK_CACHE"] = before


def run_sample(
    cfg: RunConfig,
    pairs: list[dict],
    segments: list[dict],
    rows: int = 48,
    rewrites: int = 8,
    train_steps: int = 3,
    log: Callable[[str], None] = print,
) -> dict:
    """Per generating stage: model load seconds, and seconds, prompt and generated tokens per row that
    reached the model (for curate also the share the gates skipped, and how many of the candidates the
    judge selected); for training: fixed seconds and seconds per training token. `rows` candidates are
    written and judged (enough that a share of a few percent shows), the best `rewrites` of them
    rewritten."""
    from humback.augment import augment
    from humback.curate import curate
    from humback.generation.meter import usage_of
    from humback.rewrite import rewrite
    from humback.training.sft import train

    quiet = lambda _: None
    with tempfile.TemporaryDirectory(prefix="humback-plan-") as tmp:
        work = Path(tmp)
        # Spread over the sample, not its first documents: a corpus's files differ (one site per file).
        picked = segments[:: max(1, len(segments) // rows)][:rows]
        sample = _write(work / "segments.jsonl", picked)
        n = len(picked)
        out: dict = {"rows": n}

        # Training first: timed, and backward on the seed (as M_yx is trained) so that it stands in for
        # M_yx below, unless the backward role has a model of its own. A run whose M_yx trains in at most
        # twice the timed steps gets M_yx's own schedule: what M_yx writes then, not a rougher guess.
        from humback.training.sft import plan as train_plan

        myx = train_plan(len(pairs), cfg.train, 1)
        steps = myx.steps if myx.steps <= 2 * train_steps else train_steps
        settings = cfg.train.model_copy(
            update={"max_steps": steps, "batch_size": myx.batch, "save_steps": None}
        )
        seed_file = _write(work / "seed.jsonl", pairs)
        start = time.perf_counter()
        stats = train(
            [seed_file],
            cfg.model,
            work / "myx",
            settings,
            direction="backward",
            seed=cfg.random_seed,
            log=quiet,
        )
        wall = time.perf_counter() - start
        log(f"[plan] measured training: {steps} steps in {stats['seconds']:.1f} s ({wall:.1f} s in all)")
        out["train"] = {
            "steps": steps,
            "fixed_s": round(wall - stats["seconds"], 2),
            "token_s": stats["seconds"] / max(1, stats["tokens_seen"]),
        }
        stand_in = work / "myx"

        def timed(stage: str, role: str, fn, asked=lambda: n, model: Path | None = None) -> dict:
            """Times fn(runner) and reads its engine's meter: seconds, prompt and generated tokens per row
            that reached the model (`asked()`, called after it), every pass the stage makes counted as a
            run's meter counts it."""
            runner, load, engine = _role(cfg, role, work / "converted", model)
            start = time.perf_counter()
            stats = fn(runner)
            seconds, rows = time.perf_counter() - start, max(1, asked())
            used = usage_of(runner.generator)
            log(f"[plan] measured {stage}: {rows} rows in {seconds:.1f} s (+ {load:.1f} s to load)")
            got = {
                "load_s": round(load, 2),
                "row_s": seconds / rows,
                "prompt_tokens": used.prompt_tokens / rows,
                "new_tokens": used.generated_tokens / rows,
            }
            if engine.backend == "openai":  # requests ran min(rows, concurrency) at a time
                got["latency_s"] = seconds / rows * min(rows, engine.concurrency)
            return got, stats

        a, _ = timed(
            "augment",
            "backward",
            lambda r: augment(
                sample, r, work / "candidates.jsonl", cfg.augment, seed=cfg.random_seed, log=quiet
            ),
            model=stand_in,
        )
        made = list(read_jsonl(work / "candidates.jsonl"))
        out["augment"] = a
        c, curated = timed(
            "curate",
            "judge",
            lambda r: curate(
                work / "candidates.jsonl",
                r,
                work / "iter1",
                cfg.curate,
                iteration=1,
                seed=cfg.random_seed,
                log=quiet,
            ),
            asked=lambda: sum(1 for r in read_jsonl(work / "iter1" / "scored.jsonl") if not r.get("skipped")),
        )
        scored = list(read_jsonl(work / "iter1" / "scored.jsonl"))
        c["selected"], c["candidates"] = curated["selected"], len(made)
        c["skipped_share"] = sum(1 for r in scored if r.get("skipped")) / max(1, len(scored))
        out["curate"] = c
        if cfg.rewrite.enabled:
            # The sample's best candidates stand for the selected ones (the base judge may select none).
            best = sorted(scored, key=lambda r: -(r.get("score") or 0))[: max(1, min(rewrites, n // 2))]
            by_id = {m["id"]: m for m in made}
            chosen = _write(work / "chosen.jsonl", [{**by_id[s["id"]], **s} for s in best])
            r, _ = timed(
                "rewrite",
                "rewriter",
                lambda run: rewrite(
                    chosen, run, work / "iter1r", cfg.rewrite, seed=cfg.random_seed, log=quiet
                ),
                asked=lambda: len(best),
            )
            out["rewrite"] = r
    return out

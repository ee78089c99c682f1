"""`humback plan --measure`: every stage run here on a few sample rows, timed, to extrapolate from.

The run's own models (M_yx, M_{t-1}) do not exist before the run, so the base model stands in for each
(same architecture, so the same speed; what it writes and selects is the base model's, said so in the
plan). A role with its own model (an external judge or rewriter) runs that model, an OpenAI-compatible one
included (a few real requests: their latency is measured). Nothing goes through the response cache: a
cached reply would time nothing. Everything is written in a temporary folder of its own and removed.
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


def _role(cfg: RunConfig, role: str, cache: Path):
    """The role's runner, the seconds it took to load, and its engine. The run's own model (M_yx, M_{t-1})
    is a new checkpoint each stage, which an engine converts once (OpenVINO, CTranslate2): loaded here
    through an empty converted-model cache, so that conversion is timed too."""
    from humback.generation import open_generator
    from humback.models import resolve_model
    from humback.rowloop import LocalRunner

    engine = cfg.generation.role(role)
    model = engine.model or resolve_model(cfg.model)
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
    tokens,
    rows: int = 16,
    train_steps: int = 3,
    log: Callable[[str], None] = print,
) -> dict:
    """Per generating stage: model load seconds, seconds per row, generated tokens per row (and the judge's
    selected share); for training: fixed seconds and seconds per training token."""
    from humback.augment import augment
    from humback.curate import curate
    from humback.rewrite import rewrite
    from humback.training.sft import train

    quiet = lambda _: None
    out: dict = {"rows": rows}
    with tempfile.TemporaryDirectory(prefix="humback-plan-") as tmp:
        work = Path(tmp)
        sample = _write(work / "segments.jsonl", segments[:rows])
        n = min(rows, len(segments))

        def timed(stage: str, role: str, fn) -> dict:
            runner, load, engine = _role(cfg, role, work / "converted")
            start = time.perf_counter()
            stats = fn(runner)
            seconds = time.perf_counter() - start
            log(f"[plan] measured {stage}: {n} rows in {seconds:.1f} s (+ {load:.1f} s to load)")
            got = {"load_s": round(load, 2), "row_s": seconds / n}
            if engine.backend == "openai":  # requests ran min(n, concurrency) at a time
                got["latency_s"] = seconds / n * min(n, engine.concurrency)
            return got, stats

        a, _ = timed(
            "augment",
            "backward",
            lambda r: augment(
                sample, r, work / "candidates.jsonl", cfg.augment, seed=cfg.random_seed, log=quiet
            ),
        )
        made = list(read_jsonl(work / "candidates.jsonl"))
        a["new_tokens"] = sum(tokens.count(c["instruction"]) + 1 for c in made) / max(1, len(made))
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
        )
        scored = list(read_jsonl(work / "iter1" / "scored.jsonl"))
        replies = [r["reasoning"] for r in scored if "reasoning" in r]  # one reply per judged row
        c["new_tokens"] = sum(tokens.count(x) for x in replies) / len(replies) if replies else 0.0
        c["selected_share"] = curated["selected"] / max(1, len(made))
        out["curate"] = c
        if cfg.rewrite.enabled:
            # The sample's best candidates stand for the selected ones (the base judge may select none).
            best = sorted(scored, key=lambda r: -(r.get("score") or 0))[: max(1, n // 2)]
            by_id = {m["id"]: m for m in made}
            chosen = _write(work / "chosen.jsonl", [{**by_id[s["id"]], **s} for s in best])
            r, _ = timed(
                "rewrite",
                "rewriter",
                lambda run: rewrite(
                    chosen, run, work / "iter1r", cfg.rewrite, seed=cfg.random_seed, log=quiet
                ),
            )
            r["row_s"] = r["row_s"] * n / len(best)  # it rewrote len(best) rows, not n
            done = list(read_jsonl(work / "iter1r" / "rewrites.jsonl"))
            texts = [d["rewrite"].get("reply") or d["rewrite"].get("text") or d["response"] for d in done]
            r["new_tokens"] = sum(tokens.count(x) + 1 for x in texts) / max(1, len(done))
            out["rewrite"] = r
        from humback.training.sft import plan as train_plan

        batch = train_plan(len(pairs), cfg.train, 1).batch
        settings = cfg.train.model_copy(
            update={"max_steps": train_steps, "batch_size": batch, "save_steps": None}
        )
        seed_file = _write(work / "seed.jsonl", pairs)
        start = time.perf_counter()
        stats = train(
            [seed_file], cfg.model, work / "m", settings, direction="forward", seed=cfg.random_seed, log=quiet
        )
        wall = time.perf_counter() - start
        log(
            f"[plan] measured training: {train_steps} steps in {stats['seconds']:.1f} s ({wall:.1f} s in all)"
        )
        out["train"] = {
            "fixed_s": round(wall - stats["seconds"], 2),
            "token_s": stats["seconds"] / max(1, stats["tokens_seen"]),
        }
    return out

"""The loop, stage by stage, in one run directory (paper §2, docs/method.md §1):

seed -> segment -> train:myx -> augment -> train:m0 -> [curate:t (judge M_{t-1}) -> train:mt] for t = 1..T

`manifest.json` records each stage: status, fingerprint, inputs, outputs, stats, timings, versions. A
stage whose fingerprint matches a finished entry is skipped. The fingerprint covers only what changes
results (the stage's config section, the prompts, the upstream fingerprints), not batch size or device.
A stage killed midway is rerun (augment and curate resume from their last whole row), and every stage
that depends on a stage that ran is rerun too, since its inputs changed.
"""

from __future__ import annotations

import gc
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import yaml

from humback import __version__, prompts
from humback.budget import Allowance, BudgetStop, TimeUp, zero
from humback.config import RunConfig, fingerprint, fingerprint_settings
from humback.data.extract import extractor_version
from humback.errors import HumbackError
from humback.files import atomic_write, ensure_dir, file_sha256, folder_lock
from humback.rundir import RunDir
from humback.stats import StageKey, stats_problem
from humback.status import summary


class StageError(HumbackError):
    """A stage that cannot run as asked; the message says what to do."""


@dataclass
class Stage:
    key: str  # manifest key, e.g. "train:m1"
    run: Callable[[Allowance], dict]  # given what the stage may spend (humback/budget.py)
    fp: str
    outputs: dict[str, Path]
    inputs: dict[str, str]
    deps: tuple[str, ...] = ()  # upstream stage keys: when one of them runs, this one must too


def _versions() -> dict:
    import torch
    import transformers
    import trl

    return {
        "humback": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
    }


class Manifest:
    def __init__(self, run: RunDir):
        self.run = run
        self.data = run.read_manifest() if run.manifest_path.exists() else {"stages": {}}

    def save(self) -> None:
        self.run.write_manifest(self.data)

    def stage(self, key: str) -> dict:
        return self.data["stages"].get(key, {})


def _describe(path: Path) -> dict:
    if path.is_file():
        return {"path": str(path), "sha256": file_sha256(path), "bytes": path.stat().st_size}
    return {"path": str(path), "files": sorted(p.name for p in path.glob("*"))}


def source_fingerprint(source: str) -> list | str:
    """What a local seed or corpus holds, cheaply: each file's path, size and modification time (a corpus
    edited in place makes its stage run again). Hub ids and 'demo' are their names (a hub dataset's
    revision is the hub's to pin: give a local snapshot for a fixed input)."""
    path = Path(source).expanduser()
    if source == "demo" or not path.exists():
        return source
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [
        [str(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size, p.stat().st_mtime_ns]
        for p in files
    ]


def build_stages(cfg: RunConfig, run_dir: Path, log: Callable[[str], None]) -> list[Stage]:
    """The stage graph, declared once: each stage names its own settings and its upstream stages; its
    fingerprint is derived from both (upstream fingerprints in the order named), and its dependencies
    are the same upstream names. An upstream of None (an external model replacing one of the run's own)
    stands in the fingerprint as null and adds no dependency."""
    from humback.augment import augment
    from humback.curate import curate
    from humback.data.seed import seed_pairs
    from humback.data.segment import segment
    from humback.rewrite import rewrite
    from humback.runners import file_map, runner_for
    from humback.training.sft import train

    g, run, rs = cfg.generation, RunDir(run_dir), cfg.random_seed
    stages: list[Stage] = []
    fps: dict[str, str] = {}

    def add(
        key: str,
        work: Callable[[Allowance], dict],
        *,
        settings: tuple,
        upstream: tuple[str | None, ...] = (),
        outputs: dict[str, Path],
        inputs: dict[str, str],
    ) -> None:
        fps[key] = fingerprint(key, *settings, *(fps[u] if u else None for u in upstream), rs)
        stages.append(Stage(key, work, fps[key], outputs, inputs, tuple(u for u in upstream if u)))

    def runner(role, own_model: Path, allowance: Allowance):
        return runner_for(g.role(role), str(own_model), run.cache_file(g.cache), cfg.cluster, allowance)

    def train_stage(name: str, direction: str, data: list[Path]) -> Callable[[Allowance], dict]:
        def work(allowance: Allowance) -> dict:
            job = partial(train, data, cfg.model, run.model(name), cfg.train, direction=direction, seed=rs)
            if cfg.cluster.engine == "ray" and cfg.cluster.train_workers:
                from humback.training.ray_train import train_on_ray

                # A budget's max_hours is checked when the stage starts, not between Ray Train's steps.
                return train_on_ray(partial(job, log=print), run.model(name), cfg.cluster)
            left = allowance.seconds_left()
            try:
                return job(log=log, deadline=None if left is None else time.time() + left)
            except TimeUp as e:  # checkpointed: the rerun resumes from that step
                raise allowance.stop(e.done, e.total, "steps") from None

        return work

    # Each section's fields marked speed-only (micro-batching, shard sizes, strictness ...) are left out.
    train_fp = fingerprint_settings(cfg.train)
    add(
        "seed",
        lambda _: seed_pairs(cfg.seed.source, run.seed, cfg.seed, seed=rs, log=log),
        settings=(fingerprint_settings(cfg.seed), source_fingerprint(cfg.seed.source)),
        outputs={"seed": run.seed},
        inputs={"source": cfg.seed.source},
    )
    add(
        "segment",
        lambda _: segment(
            cfg.segment.corpus, run.segments, cfg.segment, seed=rs, log=log, map_files=file_map(cfg.cluster)
        ),
        settings=(
            fingerprint_settings(cfg.segment),
            extractor_version(cfg.segment.extractor),
            source_fingerprint(cfg.segment.corpus),
        ),
        outputs={"segments": run.segments},
        inputs={"corpus": cfg.segment.corpus},
    )
    add(
        "train:myx",
        train_stage("myx", "backward", [run.seed]),
        settings=(cfg.model, train_fp, prompts.BACKWARD_PROMPT),
        upstream=("seed",),
        outputs={"model": run.model("myx")},
        inputs={"data": str(run.seed), "base": cfg.model},
    )
    backward, judge_engine = g.role("backward"), g.role("judge")
    add(
        "augment",
        lambda a: augment(
            run.segments,
            runner("backward", run.model("myx"), a),
            run.candidates,
            cfg.augment,
            seed=rs,
            log=log,
        ),
        settings=(fingerprint_settings(cfg.augment), prompts.BACKWARD_PROMPT, backward.identity()),
        upstream=(None if backward.model else "train:myx", "segment"),
        outputs={"candidates": run.candidates},
        inputs={"segments": str(run.segments), "model": backward.model or str(run.model("myx"))},
    )
    add(
        "train:m0",
        train_stage("m0", "forward", [run.seed]),
        settings=(cfg.model, train_fp, prompts.SYSTEM_SEED),
        upstream=("seed",),
        outputs={"model": run.model("m0")},
        inputs={"data": str(run.seed), "base": cfg.model},
    )
    for t in range(1, cfg.iterations + 1):
        judge = run.judge(t, judge_engine.model)
        add(
            f"curate:{t}",
            lambda a, judge=judge, t=t: curate(
                run.candidates,
                runner("judge", judge, a),
                run.iteration(t),
                cfg.curate,
                iteration=t,
                seed=rs,
                log=log,
            ),
            settings=(fingerprint_settings(cfg.curate), prompts.CURATION_PROMPT, judge_engine.identity()),
            upstream=(None if judge_engine.model else f"train:m{t - 1}", "augment"),
            outputs={"scored": run.scored(t), "selected": run.selected(t)},
            inputs={"candidates": str(run.candidates), "judge": judge},
        )
        trained_on = run.selected(t)
        if cfg.rewrite.enabled:
            # Back-and-Forth: the selected pairs' responses rewritten by an aligned model (the base model
            # unless generation.rewriter names one), then trained on instead of the originals.
            rewriter = g.role("rewriter")
            add(
                f"rewrite:{t}",
                lambda a, t=t: rewrite(
                    run.selected(t),
                    runner("rewriter", cfg.model, a),
                    run.iteration(t),
                    cfg.rewrite,
                    seed=rs,
                    log=log,
                ),
                settings=(
                    fingerprint_settings(cfg.rewrite),
                    prompts.REWRITE_PROMPT,
                    rewriter.identity(),
                    rewriter.model or cfg.model,
                ),
                upstream=(f"curate:{t}",),
                outputs={"rewrites": run.rewrites(t), "rewritten": run.rewritten(t)},
                inputs={"selected": str(run.selected(t)), "rewriter": rewriter.model or cfg.model},
            )
            trained_on = run.rewritten(t)
        # Paper §2.2: M_t is fine-tuned from the *base* model on seed + A_k^(t), not from M_{t-1}.
        last = f"rewrite:{t}" if cfg.rewrite.enabled else f"curate:{t}"
        add(
            f"train:m{t}",
            train_stage(f"m{t}", "forward", [run.seed, trained_on]),
            settings=(cfg.model, train_fp, prompts.SYSTEM_AUGMENTED),
            upstream=("seed", last),
            outputs={"model": run.model(f"m{t}")},
            inputs={"data": f"{run.seed} + {trained_on}", "base": cfg.model},
        )
    return stages


def run_pipeline(
    cfg: RunConfig, run_dir: str | Path, force: str | None = None, log: Callable[[str], None] = print
) -> dict:
    """Run every stage not already done with the same fingerprint. Returns the manifest data."""
    from humback.models import resolve_model

    run_dir = Path(run_dir)
    if run_dir.is_symlink():  # the run folder you named (e.g. a link to a larger disk): followed once, here
        run_dir = run_dir.resolve()
    run = RunDir(run_dir)
    own = {
        run.manifest_path.name,
        run.config_path.name,
        run.lock_path.name,
        run.plan_path.name,  # humback plan, before the run
        "cache",
    }  # what an early kill leaves
    if (
        run_dir.is_dir()
        and any(p.name not in own for p in run_dir.iterdir())
        and not run.manifest_path.exists()
    ):
        raise StageError(
            f"{run_dir} is a folder humback did not create (no manifest.json, not empty): give the run "
            "a new name or an empty folder"
        )
    resolve_model(cfg.model)  # an unknown model name fails now, not after the data stages
    if cfg.rewrite.enabled:
        from humback.rewrite import check_rewriter

        check_rewriter(cfg.generation.role("rewriter"), cfg.model)  # a rewriter without a chat template: now
    ensure_dir(run_dir)
    # One process per run folder: two would resume the same partial files and delete each other's temp output.
    with folder_lock(run.lock_path, wait=False, what=str(run_dir)):
        return _run_stages(cfg, run_dir, force, log)


def _run_stages(cfg: RunConfig, run_dir: Path, force: str | None, log: Callable[[str], None]) -> dict:
    stages = build_stages(cfg, run_dir, log)
    keys = [s.key for s in stages]
    if force is not None and force not in keys and force not in {StageKey.parse(k).kind for k in keys}:
        raise StageError(f"--force {force}: no such stage (stages: {', '.join(keys)})")
    manifest = Manifest(RunDir(run_dir))
    manifest.data.update({"name": cfg.name, "run_dir": str(run_dir), "config": cfg.model_dump()})
    # Drop entries of stages this config no longer has (e.g. fewer iterations).
    manifest.data["stages"] = {k: v for k, v in manifest.data["stages"].items() if k in keys}
    atomic_write(RunDir(run_dir).config_path, yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    ran: set[str] = set()
    for stage in stages:
        # Rerun when asked, or when an upstream stage ran now: its outputs are new even if its
        # fingerprint is not (a resumed or forced stage).
        forcing = force in (stage.key, StageKey.parse(stage.key).kind) or any(d in ran for d in stage.deps)
        prev = manifest.stage(stage.key)
        done = (
            prev.get("status") == "done"
            and prev.get("fingerprint") == stage.fp
            and all(p.exists() for p in stage.outputs.values())
        )
        if done and not forcing:
            log(f"[{stage.key}] skipped: done with the same fingerprint")
            continue
        resuming = prev.get("fingerprint") == stage.fp and not forcing and prev.get("status") != "done"
        if prev.get("fingerprint") != stage.fp or forcing:
            _discard_partials(stage)  # rows of another configuration must not be resumed
        entry = {
            "status": "running",
            "fingerprint": stage.fp,
            "inputs": stage.inputs,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions(),
        }
        # A resumed stage goes on counting what its killed or stopped attempts spent.
        allowance = _allowance(cfg, stage.key, manifest, prev.get("spent") if resuming else None)
        manifest.data["stages"][stage.key] = entry
        allowance.on_spend = lambda spent, entry=entry: (entry.update(spent=spent), manifest.save())
        manifest.save()
        log(f"[{stage.key}] running")
        start = time.time()
        try:
            allowance.check()
            stats = stage.run(allowance)
        except BudgetStop as e:
            entry.update(status="stopped", spent=allowance.spent(), stopped=_stopped(e))
            manifest.save()
            raise
        problem = stats_problem(stage.key, stats)
        if problem:
            log(f"[humback] warning, please report: {problem}")
        gc.collect()  # each stage loads its own model: free the last one before the next loads
        ran.add(stage.key)
        entry.update(
            {
                "status": "done",
                "stats": stats,
                "spent": allowance.spent(),
                "seconds": round(time.time() - start, 1),
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "outputs": {k: str(p) for k, p in stage.outputs.items()},
                "output_files": {k: _describe(p) for k, p in stage.outputs.items()},
            }
        )
        manifest.save()
    log(summary(manifest.data))
    return manifest.data


def _allowance(cfg: RunConfig, key: str, manifest: Manifest, spent: dict | None) -> Allowance:
    """What stage `key` may spend: its own limits from nothing, the run's beyond what the other stages of
    this run spent (manifest `spent`)."""
    others = zero()
    for k, entry in manifest.data["stages"].items():
        if k != key:
            for q, v in entry.get("spent", {}).items():
                others[q] = others.get(q, 0) + v
    scopes = [
        (path, limits, others if path == "budget" else zero()) for path, limits in cfg.budget.for_stage(key)
    ]
    return Allowance(key, scopes, spent)


def _stopped(e: BudgetStop) -> dict:
    return {"limit": e.limit, "done": e.done, "left": e.left, "unit": e.unit, "message": str(e)}


def _discard_partials(stage: Stage) -> None:
    for p in stage.outputs.values():
        partial = p.with_name(p.name + ".partial")
        if partial.exists():
            partial.unlink()

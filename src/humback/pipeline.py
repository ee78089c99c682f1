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
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from humback import __version__, prompts
from humback.config import RunConfig, fingerprint
from humback.data.extract import extractor_version
from humback.errors import HumbackError
from humback.records import atomic_write, file_lock, file_sha256, read_jsonl, read_manifest


class StageError(HumbackError):
    """A stage that cannot run as asked; the message says what to do."""


@dataclass
class Stage:
    key: str  # manifest key, e.g. "train:m1"
    run: Callable[[], dict]
    fp: str
    outputs: dict[str, Path]
    inputs: dict[str, str]
    deps: tuple[str, ...] = ()  # upstream stage keys: when one of them runs, this one must too


def _versions() -> dict:
    import torch
    import transformers
    import trl

    return {"humback": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__}


class Manifest:
    def __init__(self, run_dir: Path):
        self.path = run_dir / "manifest.json"
        self.data = read_manifest(run_dir) if self.path.exists() else {"stages": {}}

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=1))

    def stage(self, key: str) -> dict:
        return self.data["stages"].get(key, {})


def _describe(path: Path) -> dict:
    if path.is_file():
        return {"path": str(path), "sha256": file_sha256(path), "bytes": path.stat().st_size}
    return {"path": str(path), "files": sorted(p.name for p in path.glob("*"))}


def stage_keys(iterations: int) -> list[str]:
    keys = ["seed", "segment", "train:myx", "augment", "train:m0"]
    for t in range(1, iterations + 1):
        keys += [f"curate:{t}", f"train:m{t}"]
    return keys


def _engine_note(stats: dict) -> str:
    if "backend" not in stats:
        return ""
    cached = f", {stats['cache_hits']} cached" if stats.get("cache_hits") else ""
    return f", {stats['backend']}{cached}"


def _note(key: str, stats: dict) -> str:
    if key.startswith("curate"):
        ifd = f", {stats['skipped_ifd']} cut by IFD" if stats.get("skipped_ifd") else ""
        return (f"selected {stats['selected']} (score >= {stats['threshold']}{ifd}), parse failures "
                f"{stats['parse_failure_rate']:.0%}, mean score {stats['mean_score']}, histogram "
                f"{stats['score_histogram']}" + _engine_note(stats))
    if key.startswith("train"):
        loss = "" if stats.get("first_loss") is None else f", loss {stats['first_loss']:.3f} -> {stats['last_loss']:.3f}"
        return f"{stats['steps']} steps x batch {stats['batch_size']}, {stats['method']}{loss}"
    if key == "segment":
        return f"funnel {stats['funnel']}"
    if key == "seed":
        return f"drops {stats['drops']}"
    if key == "augment":
        return (f"empty instructions {stats['empty_instructions']}, resumed rows {stats['resumed_rows']}"
                + _engine_note(stats))
    return ""


def summary(data: dict) -> str:
    """The closing summary: rows per stage, score histograms, parse failures, where things are."""
    lines = [f"\nhumback run '{data.get('name', '?')}' in {data.get('run_dir', '?')}",
             f"{'stage':<10} {'status':<8} {'rows':>5} {'seconds':>8}  notes"]
    iterations = data.get("config", {}).get("iterations", 0)
    keys = list(dict.fromkeys(stage_keys(iterations) + list(data["stages"])))
    for key in keys:
        st = data["stages"].get(key, {"status": "pending"})
        stats = st.get("stats", {})
        rows = stats.get("rows", stats.get("examples", ""))
        note = _note(key, stats) if st["status"] == "done" else ""
        lines.append(f"{key:<10} {st['status']:<8} {rows!s:>5} {st.get('seconds', '')!s:>8}  {note}")
    outs = {k: st.get("outputs", {}) for k, st in data["stages"].items() if st.get("status") == "done"}
    curated = [o["selected"] for k, o in outs.items() if k.startswith("curate")]
    models = [o["model"] for k, o in outs.items() if k.startswith("train")]
    if curated:
        lines.append(f"curated dataset: {curated[-1]}")
    if models:
        lines.append("models: " + ", ".join(models))
    return "\n".join(lines)


def source_fingerprint(source: str) -> list | str:
    """What a local seed or corpus holds, cheaply: each file's path, size and modification time (a corpus
    edited in place makes its stage run again). Hub ids and 'demo' are their names (a hub dataset's
    revision is the hub's to pin: give a local snapshot for a fixed input)."""
    path = Path(source).expanduser()
    if source == "demo" or not path.exists():
        return source
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[str(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size, p.stat().st_mtime_ns]
            for p in files]


def build_stages(cfg: RunConfig, run_dir: Path, log: Callable[[str], None]) -> list[Stage]:
    from humback.augment import augment
    from humback.curate import curate
    from humback.data.seed import seed
    from humback.data.segment import segment
    from humback.generation.cache import open_generator
    from humback.training.sft import train

    d, g = cfg.data, cfg.generation
    seed_file, seg_file = run_dir / "seed.jsonl", run_dir / "segments.jsonl"
    cand_file, models = run_dir / "candidates.jsonl", run_dir / "models"

    def generator(role, own_model: Path):
        return open_generator(g.role(role), str(own_model), run_dir / "cache" / "responses.sqlite" if g.cache else None)

    def train_stage(name: str, direction: str, data_files: list[Path]) -> Callable[[], dict]:
        def run() -> dict:
            pairs = [row for f in data_files for row in read_jsonl(f)]
            return train(pairs, cfg.model, models / name, direction, cfg.train, seed=cfg.seed, log=log)
        return run

    # Only what changes results: micro-batching, gradient checkpointing and how often a resumable
    # checkpoint is written trade memory or disk for time, nothing else.
    train_fp = cfg.train.model_dump(exclude={"micro_batch_size", "gradient_checkpointing", "save_steps"})
    stages: list[Stage] = []
    seed_keys = {"seed_source", "seed_format", "seed_split", "instruction_field", "response_field", "min_quality",
                 "lang", "max_seed"}
    fp_seed = fingerprint("seed", d.model_dump(include=seed_keys), source_fingerprint(d.seed_source), cfg.seed)
    stages.append(Stage("seed", lambda: seed(d.seed_source, seed_file, d, cfg.seed, log=log),
                        fp_seed, {"seed": seed_file}, {"source": d.seed_source}))
    fp_seg = fingerprint("segment", d.model_dump(exclude=seed_keys | {"shard_size", "strict"}),
                         extractor_version(d.extractor), source_fingerprint(d.corpus), cfg.seed)
    stages.append(Stage("segment", lambda: segment(d.corpus, seg_file, d, cfg.seed, log=log),
                        fp_seg, {"segments": seg_file}, {"corpus": d.corpus}))
    fp_myx = fingerprint("train:myx", cfg.model, train_fp, prompts.BACKWARD_PROMPT, fp_seed, cfg.seed)
    stages.append(Stage("train:myx", train_stage("myx", "backward", [seed_file]), fp_myx,
                        {"model": models / "myx"}, {"data": str(seed_file), "base": cfg.model}, ("seed",)))
    backward, judge_engine = g.role("backward"), g.role("judge")
    fp_aug = fingerprint("augment", cfg.augment, prompts.BACKWARD_PROMPT, backward.identity(),
                         None if backward.model else fp_myx, fp_seg, cfg.seed)
    stages.append(Stage("augment", lambda: augment(seg_file, generator("backward", models / "myx"), cand_file,
                                                   cfg.augment, cfg.seed),
                        fp_aug, {"candidates": cand_file},
                        {"segments": str(seg_file), "model": backward.model or str(models / "myx")},
                        ("segment",) if backward.model else ("segment", "train:myx")))
    fp_prev = fingerprint("train:m0", cfg.model, train_fp, prompts.SYSTEM_SEED, fp_seed, cfg.seed)
    stages.append(Stage("train:m0", train_stage("m0", "forward", [seed_file]), fp_prev,
                        {"model": models / "m0"}, {"data": str(seed_file), "base": cfg.model}, ("seed",)))
    for t in range(1, cfg.iterations + 1):
        judge, it_dir = models / f"m{t - 1}", run_dir / f"iter{t}"
        # The judge is M_{t-1} (paper §2.2) unless the config names an external one.
        external = judge_engine.model is not None
        fp_cur = fingerprint(f"curate:{t}", cfg.curate, prompts.CURATION_PROMPT, judge_engine.identity(),
                             None if external else fp_prev, fp_aug, cfg.seed)
        stages.append(Stage(
            f"curate:{t}",
            lambda judge=judge, it_dir=it_dir, t=t: curate(cand_file, generator("judge", judge), it_dir, cfg.curate,
                                                            t, cfg.seed),
            fp_cur, {"scored": it_dir / "scored.jsonl", "selected": it_dir / "selected.jsonl"},
            {"candidates": str(cand_file), "judge": judge_engine.model or str(judge)},
            ("augment",) if external else ("augment", f"train:m{t - 1}")))
        # Paper §2.2: M_t is fine-tuned from the *base* model on seed + A_k^(t), not from M_{t-1}.
        fp_prev = fingerprint(f"train:m{t}", cfg.model, train_fp, prompts.SYSTEM_AUGMENTED, fp_seed, fp_cur, cfg.seed)
        stages.append(Stage(f"train:m{t}", train_stage(f"m{t}", "forward", [seed_file, it_dir / "selected.jsonl"]),
                            fp_prev, {"model": models / f"m{t}"},
                            {"data": f"{seed_file} + {it_dir / 'selected.jsonl'}", "base": cfg.model},
                            ("seed", f"curate:{t}")))
    return stages


def run_pipeline(cfg: RunConfig, run_dir: str | Path, force: str | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Run every stage not already done with the same fingerprint. Returns the manifest data."""
    from humback.models import resolve_model

    run_dir = Path(run_dir)
    own = {"manifest.json", "config.yaml", ".humback.lock", "cache"}  # what a run killed early may have left
    if run_dir.is_dir() and any(p.name not in own for p in run_dir.iterdir()) and not (run_dir / "manifest.json").exists():
        raise StageError(f"{run_dir} is a folder humback did not create (no manifest.json, not empty): give the run "
                         "a new name or an empty folder")
    resolve_model(cfg.model)  # an unknown model name fails now, not after the data stages
    run_dir.mkdir(parents=True, exist_ok=True)
    # One process per run folder: two would resume the same partial files and delete each other's temp output.
    with file_lock(run_dir / ".humback.lock", wait=False, what=str(run_dir)):
        return _run_stages(cfg, run_dir, force, log)


def _run_stages(cfg: RunConfig, run_dir: Path, force: str | None, log: Callable[[str], None]) -> dict:
    stages = build_stages(cfg, run_dir, log)
    keys = [s.key for s in stages]
    if force is not None and force not in keys and force not in {k.split(":")[0] for k in keys}:
        raise StageError(f"--force {force}: no such stage (stages: {', '.join(keys)})")
    manifest = Manifest(run_dir)
    manifest.data.update({"name": cfg.name, "run_dir": str(run_dir), "config": cfg.model_dump()})
    # Drop entries of stages this config no longer has (e.g. fewer iterations).
    manifest.data["stages"] = {k: v for k, v in manifest.data["stages"].items() if k in keys}
    atomic_write(run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    ran: set[str] = set()
    for stage in stages:
        # Rerun when asked, or when an upstream stage ran now: its outputs are new even if its
        # fingerprint is not (a resumed or forced stage).
        forcing = force in (stage.key, stage.key.split(":")[0]) or any(d in ran for d in stage.deps)
        prev = manifest.stage(stage.key)
        done = (prev.get("status") == "done" and prev.get("fingerprint") == stage.fp
                and all(p.exists() for p in stage.outputs.values()))
        if done and not forcing:
            log(f"[{stage.key}] skipped: done with the same fingerprint")
            continue
        if prev.get("fingerprint") != stage.fp or forcing:
            _discard_partials(stage)  # rows of another configuration must not be resumed
        entry = {"status": "running", "fingerprint": stage.fp, "inputs": stage.inputs,
                 "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": _versions()}
        manifest.data["stages"][stage.key] = entry
        manifest.save()
        log(f"[{stage.key}] running")
        start = time.time()
        stats = stage.run()
        gc.collect()  # each stage loads its own model: free the last one before the next loads
        ran.add(stage.key)
        entry.update({"status": "done", "stats": stats, "seconds": round(time.time() - start, 1),
                      "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "outputs": {k: str(p) for k, p in stage.outputs.items()},
                      "output_files": {k: _describe(p) for k, p in stage.outputs.items()}})
        manifest.save()
    log(summary(manifest.data))
    return manifest.data


def _discard_partials(stage: Stage) -> None:
    for p in stage.outputs.values():
        partial = p.with_name(p.name + ".partial")
        if partial.exists():
            partial.unlink()


def status_table(run_dir: str | Path) -> str:
    return summary(read_manifest(run_dir))

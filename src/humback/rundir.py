"""What a run directory holds: the paths of its files, the manifest, the response cache. The whole tree,
temporary files included (the README's "The run directory" shows the same):

```
runs/<name>/
  manifest.json          per stage: status, fingerprint, inputs, outputs (+ sha256), stats, timings, versions,
                         spent (rows, requests, prompt and generated tokens, dollars, seconds; budget)
  config.yaml            the resolved config
  plan.json              humback plan: per stage rows, tokens, disk and time before the run (optional)
  .humback.lock          held by the one process writing the run (its pid and command inside)
  seed.jsonl             {id, instruction, response, source, meta{tree_id, prompt_id, reply_id, lang, ...}}
  segments.jsonl         {id, text, source, url, header_path, meta{doc_id, location, offsets (plain text)}}
  candidates.jsonl       {id (= segment id), instruction, response, segment_id, generator{model, params}}
  iter<t>/scored.jsonl   {id, score (what selection ranks by), judge_score, reasoning, ifd, nll, end_logprob,
                          overlap, skipped (the gate or cut), judge_directed, iteration}
  iter<t>/selected.jsonl {id, instruction, response, score, tag}  <- the curated dataset
  iter<t>/passed_over.jsonl {id, reason (near_duplicate_instruction|diversity), like, similarity}
  iter<t>/rewrites.jsonl {id, instruction, response, original_response, score, tag, rewrite{status, model,
                          overlap, length_ratio, novel, text|reply}}  (rewrite.enabled: every attempt)
  iter<t>/rewritten.jsonl  the same rows as training uses them (rewrite.enabled)
  models/myx, m0 .. mT/  plain safetensors checkpoints (LoRA merged) + tokenizer + humback_train.json
  cache/responses.sqlite every reply (with -wal and -shm beside it while open)
  eval/                  humback eval: metrics.json, answers/<model>.json (AlpacaEval's format),
                         calibration/iter<t>/{scored.jsonl, calibration.json} (each iteration's judge)
  report/                humback report (also written by eval): report.md, its PNGs, index.html
while a stage runs, or after it was killed (each removed or reused by the rerun):
  <output>.partial                 the rows finished so far (a local generating stage)
  <output>.partial.settings.json   what those rows were made with; other settings start them over
  <output>.shards/                 settings.json + NNNNN.jsonl per finished shard (cluster.engine: ray;
                                   kept after the stage as the cluster's response cache)
  models/<m>.tmp/                  a training in progress: trainer/ checkpoints + humback_resume_key
  models/<m>.ray/                  Ray Train's run records (cluster.train_workers > 0)
  .<file>.<random>.tmp             a file being written, renamed over <file> when whole
outside the run, in $HUMBACK_CACHE (default ~/.cache/humback):
  models/                the embedded default model, converted once from its GGUF file
  ctranslate2/, openvino/  each checkpoint converted once per engine, precision and version
  view/                  humback view's DuckDB copy of a run, keyed by the run files' sizes and times
```
Stages are functions over files and take these paths as arguments; only the pipeline and the commands that
read a finished run (status, eval, report, export, view) open a run directory. A test checks that the
README shows this tree.
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from humback.files import atomic_write, folder_lock
from humback.records import RecordError
from humback.stats import StageKey

# What curation writes into its folder: every candidate scored, the selection, and the candidates above
# the threshold that selection passed over (a near-duplicate or too similar to one selected).
SCORED, SELECTED, PASSED_OVER = "scored.jsonl", "selected.jsonl", "passed_over.jsonl"
# What the rewrite stage writes there: every attempt, and the rows training uses.
REWRITES, REWRITTEN = "rewrites.jsonl", "rewritten.jsonl"


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def lock_path(self) -> Path:
        return self.root / ".humback.lock"

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    @property
    def seed(self) -> Path:
        return self.root / "seed.jsonl"

    @property
    def segments(self) -> Path:
        return self.root / "segments.jsonl"

    @property
    def candidates(self) -> Path:
        return self.root / "candidates.jsonl"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model(self, name: str) -> Path:
        """models/<name>: 'myx' (backward) or 'm<t>' (forward after iteration t)."""
        return self.models / name

    def iteration(self, t: int) -> Path:
        return self.root / f"iter{t}"

    def scored(self, t: int) -> Path:
        return self.iteration(t) / SCORED

    def selected(self, t: int) -> Path:
        return self.iteration(t) / SELECTED

    def passed_over(self, t: int) -> Path:
        return self.iteration(t) / PASSED_OVER

    def rewrites(self, t: int) -> Path:
        return self.iteration(t) / REWRITES

    def rewritten(self, t: int) -> Path:
        return self.iteration(t) / REWRITTEN

    def judge(self, t: int, external: str | None = None) -> str:
        """Who judges iteration t: M_{t-1} (paper §2.2), unless the config names an `external` judge."""
        return external or str(self.model(f"m{t - 1}"))

    def iterations(self) -> list[int]:
        """Iterations with scored rows; only iter<N> folders (a user's copy such as iter1.bak is not one)."""
        return sorted(
            int(p.name[4:])
            for p in self.root.glob("iter*")
            if p.name[4:].isdigit() and (p / SCORED).is_file()
        )

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def calibration(self, t: int) -> Path:
        """eval/calibration/iter<t>: iteration t's judge measured on the held-out pairs (humback eval)."""
        return self.eval_dir / "calibration" / f"iter{t}"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def cache_file(self, enabled: bool = True) -> Path | None:
        """The response cache (None when generation.cache is off)."""
        return self.root / "cache" / "responses.sqlite" if enabled else None

    def read_manifest(self) -> dict:
        """The manifest, or a RecordError saying what is wrong with it."""
        path = self.manifest_path
        if not path.is_file():
            raise RecordError(
                f"{self.root} is not a humback run directory (no manifest.json; `humback run` makes one)"
            )
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise RecordError(
                f"{path} is corrupt ({type(e).__name__}: {str(e)[:80]}); restore it, or delete it to "
                "rerun every stage (finished outputs are checked again)"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
            raise RecordError(f"{path} is not a humback manifest (expected an object with 'stages')")
        data.setdefault("stages", {})
        problem = manifest_problem(data)
        if problem:
            raise RecordError(
                f"{path}: {problem}; restore the file, or delete it to rerun every stage (finished"
                " outputs are checked again)"
            )
        return data

    def write_manifest(self, data: dict) -> None:
        atomic_write(self.manifest_path, json.dumps(data, indent=1))


_SHAPES = {
    "status": str,
    "stats": dict,
    "outputs": dict,
    "output_files": dict,
    "inputs": dict,
    "fingerprint": str,
    "seconds": (int, float),
    "versions": dict,
}


def manifest_problem(data: dict) -> str | None:
    """What makes a manifest's contents unusable (a hand edit, another tool's file), naming the key, or None.
    (A stage's stats are shown as far as they go: older versions recorded fewer keys.)"""
    for key in ("config", "name", "run_dir"):
        want = dict if key == "config" else str
        if key in data and not isinstance(data[key], want):
            return (
                f"key '{key}' must be {'an object' if want is dict else 'a string'}, got {_kind(data[key])}"
            )
    for section, value in (data.get("config") or {}).items():
        if section in (
            "seed",
            "segment",
            "generation",
            "augment",
            "curate",
            "train",
            "eval",
            "cluster",
            "rewrite",
        ) and not isinstance(value, dict):
            return f"key 'config.{section}' must be an object, got {_kind(value)}"
    for key, stage in data["stages"].items():
        if StageKey.parse(key) is None:
            return (
                f"'stages.{key}' is not a stage (stages: seed, segment, train:myx, augment, train:m<t>,"
                " curate:<t>, rewrite:<t>)"
            )
        if not isinstance(stage, dict):
            return f"'stages.{key}' must be an object, got {_kind(stage)}"
        if "status" not in stage:
            return f"'stages.{key}' has no 'status'"
        for field, want in _SHAPES.items():
            if field in stage and not (isinstance(stage[field], want) and not isinstance(stage[field], bool)):
                return f"'stages.{key}.{field}' has the wrong type ({_kind(stage[field])})"
    return None


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def run_root(path: str | Path) -> Path | None:
    """The run directory `path` lies in (a folder holding manifest.json, or config.yaml beside the run's lock
    while the first stage starts), or None."""
    for folder in Path(path).absolute().parents:
        run = RunDir(folder)
        if run.manifest_path.is_file() or (run.config_path.is_file() and run.lock_path.is_file()):
            return folder
    return None


def writer_lock(out: str | Path, what: str | None = None):
    """The lock a command takes before writing `out` (a file or folder): the run's own lock, the one
    `humback run` holds, when `out` lies in a run directory; else `.humback.lock` in `out`'s folder. Two
    commands writing one output never interleave: the second is a Busy error (exit 3) naming the first.
    Under a distributed launch (`accelerate launch`, torchrun) only rank 0 takes it: the others write
    nothing."""
    if os.environ.get("RANK", "0") != "0":
        return nullcontext()
    out = Path(out)
    root = run_root(out)
    lock = RunDir(root).lock_path if root is not None else out.absolute().parent / ".humback.lock"
    return folder_lock(lock, wait=False, what=what or str(root or out))

"""What a run directory holds, in one place: every path, the manifest, the response cache.

```
<run>/manifest.json, config.yaml, .humback.lock
      seed.jsonl, segments.jsonl, candidates.jsonl
      models/myx, models/m0 ... models/mT
      iter<t>/scored.jsonl, iter<t>/selected.jsonl
      cache/responses.sqlite
      eval/ (humback eval), report/ (humback report)
```
Stages are functions over files and take these paths as arguments; only the pipeline and the commands that
read a finished run (status, eval, report, export) open a run directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from humback.records import RecordError, atomic_write

SCORED, SELECTED = "scored.jsonl", "selected.jsonl"  # what curation writes into its folder


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

    def iterations(self) -> list[int]:
        """Iterations with scored rows; only iter<N> folders (a user's copy such as iter1.bak is not one)."""
        return sorted(int(p.name[4:]) for p in self.root.glob("iter*")
                      if p.name[4:].isdigit() and (p / SCORED).is_file())

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

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
            raise RecordError(f"{self.root} is not a humback run directory (no manifest.json; `humback run` makes one)")
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise RecordError(f"{path} is corrupt ({type(e).__name__}: {str(e)[:80]}); restore it, or delete it to "
                              "rerun every stage (finished outputs are checked again)") from None
        if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
            raise RecordError(f"{path} is not a humback manifest (expected an object with 'stages')")
        data.setdefault("stages", {})
        return data

    def write_manifest(self, data: dict) -> None:
        atomic_write(self.manifest_path, json.dumps(data, indent=1))

"""The generating stages' row loop: rows in, one output row per input row, each depending only on its own
row, the model and the settings (augment and curate are this loop with different per-chunk work).

A stage is handed a runner and calls `runner.map(rows, work, out, settings)`; the pipeline or the CLI
chooses the runner (humback/runners.py), so no stage knows where its rows run:

- `LocalRunner` (this process): rows go to the generator in chunks of `generator.chunk_size`, shortest
  first (little padding); each chunk's rows are appended to `<out>.partial` (RowWriter), so a killed run
  resumes with the rows that are missing. The response cache in front of the generator answers any repeat.
- `RayRunner` (humback/ray_runner.py, `cluster.engine: ray`): the rows are cut into fixed shards of
  `cluster.shard_rows` in input order, each finished shard is saved in `<out>.shards/` at once, and a rerun
  computes only the shards that are missing.

Either way `<out>` ends up holding one row per input row, in input order, and `map` returns those rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol

from tqdm.auto import tqdm

from humback.generation.base import Generator
from humback.generation.cache import ResponseCache
from humback.records import RowWriter
from humback.stats import GeneratorStats

Work = Callable[[Generator, list[dict]], list[dict]]


class Mapped(NamedTuple):
    rows: list[dict]  # the output rows, one per input row, in input order (what `out` holds)
    resumed: int  # rows an earlier, killed run had already finished


class Runner(Protocol):
    """Where a generating stage's rows run. `fingerprint` identifies the outputs (the model's)."""

    fingerprint: str

    def map(
        self,
        rows: list[dict],
        work: Work,
        out: Path,
        settings: dict,
        desc: str = "rows",
        length: Callable[[dict], int] = len,
        log: Callable[[str], None] = print,
    ) -> Mapped:
        """Write work's output rows for `rows` to `out`, kill-safely; `settings` is what the rows depend on
        besides the model (a rerun with other settings starts over, saying so through `log`); `length`
        orders rows for batching."""
        ...

    def stats(self) -> GeneratorStats:
        """What the stage records about where its text came from."""
        ...


class LocalRunner:
    """The row loop in this process, on one generator (behind the response cache when it has one)."""

    def __init__(self, generator: Generator):
        self.generator, self.fingerprint = generator, generator.fingerprint

    def map(
        self,
        rows: list[dict],
        work: Work,
        out: Path,
        settings: dict,
        desc: str = "rows",
        length: Callable[[dict], int] = len,
        log: Callable[[str], None] = print,
    ) -> Mapped:
        writer = RowWriter(out, {**settings, "model": self.fingerprint}, log=log)
        # Shortest first: batches of similar length waste little on padding (or, in CTranslate2, on prompt
        # tails fed token by token); the file is put back in input order at the end.
        todo = sorted((r for r in rows if r["id"] not in writer.done), key=length)
        resumed = len(rows) - len(todo)
        size = self.generator.chunk_size
        try:
            with tqdm(total=len(rows), initial=resumed, desc=desc, unit="row") as bar:
                for start in range(0, len(todo), size):
                    chunk = todo[start : start + size]
                    writer.write(work(self.generator, chunk))
                    bar.update(len(chunk))
            done = writer.finish(order=[r["id"] for r in rows])
        finally:
            writer.close()
        return Mapped(done, resumed)

    def stats(self) -> GeneratorStats:
        stats: GeneratorStats = {"backend": self.generator.backend}
        cache = getattr(self.generator, "cache", None)
        if isinstance(cache, ResponseCache):
            stats["cache_hits"], stats["cache_misses"] = cache.hits, cache.misses
        return stats

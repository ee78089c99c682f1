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

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from tqdm.auto import tqdm

from humback.generation.base import Generator
from humback.generation.cache import ResponseCache
from humback.generation.meter import usage_of
from humback.records import RowWriter
from humback.stats import GeneratorStats

if TYPE_CHECKING:
    from humback.budget import Allowance

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
    """The row loop in this process, on one generator (behind the response cache when it has one). With an
    `allowance` (humback/budget.py) each chunk is granted before it runs and counted after."""

    def __init__(self, generator: Generator, allowance: Allowance | None = None):
        self.generator, self.fingerprint, self.allowance = generator, generator.fingerprint, allowance

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
        size, budget = self.generator.chunk_size, self.allowance
        try:
            with tqdm(total=len(rows), initial=resumed, desc=desc, unit="row") as bar:
                start = 0
                while start < len(todo):
                    chunk = todo[start : start + size]
                    if budget is not None:  # the rows the budget has room for (humback/budget.py)
                        chunk = chunk[: budget.claim(start, len(chunk))]
                        if not chunk:
                            raise budget.stop(len(writer.done), len(rows))
                    used, began = usage_of(self.generator), time.time()
                    writer.write(work(self.generator, chunk))
                    if budget is not None:
                        usage = (usage_of(self.generator) - used).as_dict()
                        budget.settle(start, {**usage, "rows": len(chunk)}, time.time() - began)
                    bar.update(len(chunk))
                    start += len(chunk)
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

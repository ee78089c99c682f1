"""A generating stage's rows through its model: in this process, or on replicas of a Ray cluster.

augment and curate are the same loop: rows in, one output row per input row, each depending only on its
own row, the model and the settings. `map_rows` runs that loop kill-safely in either place; the stage
gives the per-chunk work (`work(generator, rows) -> output rows`).

- Local (a Generator): rows go to the model in chunks of `generator.chunk_size`, shortest first (little
  padding); each chunk's rows are appended to `<out>.partial` (RowWriter), so a killed run resumes with
  the rows that are missing. The response cache in front of the generator answers any repeat.
- Ray (a cluster.Replicas): the rows are cut into fixed shards of `cluster.shard_rows` in input order,
  each finished shard is saved in `<out>.shards/` at once, and a rerun computes only the shards that are
  missing (humback/cluster.py).

Either way `<out>` ends up holding one row per input row, in input order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from humback.generation.base import Generator
from humback.records import RowWriter

Work = Callable[[Generator, list[dict]], list[dict]]


def map_rows(rows: list[dict], work: Work, generator, out: Path, settings: dict, desc: str,
             length: Callable[[dict], int]) -> int:
    """Write work's output rows for `rows` to `out` (in input order); return how many were already done
    by an earlier, killed run. `settings` is what the rows depend on besides the model: a rerun with
    other settings starts over. `length` orders rows for batching (local engine)."""
    from humback.cluster import Replicas

    settings = {**settings, "model": generator.fingerprint}
    if isinstance(generator, Replicas):
        return generator.map(rows, work, out, settings, desc)
    writer = RowWriter(out, settings)
    # Shortest first: batches of similar length waste little on padding (or, in CTranslate2, on prompt
    # tails fed token by token); the file is put back in input order at the end.
    todo = sorted((r for r in rows if r["id"] not in writer.done), key=length)
    resumed = len(rows) - len(todo)
    try:
        with tqdm(total=len(rows), initial=resumed, desc=desc, unit="row") as bar:
            for start in range(0, len(todo), generator.chunk_size):
                chunk = todo[start:start + generator.chunk_size]
                writer.write(work(generator, chunk))
                bar.update(len(chunk))
        writer.finish(order=[r["id"] for r in rows])
    finally:
        writer.close()
    return resumed

"""JSONL rows on disk: reading with located errors, and kill-safe writing.

Every stage writes its rows through `RowWriter`: rows go to `<out>.partial`, flushed and fsynced per
batch, and the file is renamed to `<out>` only when the stage is complete. A killed stage leaves a
`.partial` whose last line may be cut; `RowWriter` drops that torn tail and reports which ids are
already done, so the rerun produces only the missing rows: none lost, none repeated.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path


class RecordError(Exception):
    """A row file that is missing or malformed; the message names the file and line."""


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[dict]:
    """Yield rows of a JSONL file, or of every *.jsonl file in a folder (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise RecordError(f"{path} holds no .jsonl files")
    elif path.is_file():
        files = [path]
    else:
        raise RecordError(f"{path} does not exist")
    for file in files:
        with open(file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise RecordError(f"{file}:{lineno}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise RecordError(f"{file}:{lineno}: expected a JSON object, got {type(row).__name__}")
                missing = [k for k in required if k not in row]
                if missing:
                    raise RecordError(f"{file}:{lineno}: missing key(s) {', '.join(missing)}")
                yield row


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write all rows to one .jsonl file at once, atomically (tmp file + rename). Returns the row count."""
    writer = ShardWriter(path)
    try:
        for row in rows:
            writer.write(row)
        writer.finish()
    finally:
        writer.close(discard=True)
    return writer.rows


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RowWriter:
    """Append rows to `<out>.partial`; `finish()` renames it to `<out>`.

    `done` holds the ids already written by an earlier, killed run.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[str] = set()
        if self.partial.exists():
            self._recover()
        self._f = open(self.partial, "a", encoding="utf-8")  # noqa: SIM115 (held open across writes; closed in finish/close)

    def _recover(self) -> None:
        data = self.partial.read_bytes()
        keep = data[: data.rfind(b"\n") + 1]  # a kill can cut the last line: drop the torn tail
        good = bytearray()
        for line in keep.splitlines(keepends=True):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a garbled line can only come from a torn write; everything after it is redone
            if row["id"] in self.done:
                continue
            self.done.add(row["id"])
            good += line
        if len(good) != len(data):
            self.partial.write_bytes(bytes(good))

    def write(self, rows: Iterable[dict]) -> None:
        for row in rows:
            if row["id"] in self.done:
                continue
            self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.done.add(row["id"])
        self._f.flush()
        os.fsync(self._f.fileno())

    def finish(self, order: list[str] | None = None) -> int:
        """Close and publish. With `order`, rows are rewritten in that id order (so a resumed run's
        file equals an uninterrupted one's) and any id missing from it is an error."""
        self._f.close()
        if order is not None:
            rows = {r["id"]: r for r in read_jsonl(self.partial)}
            missing = [i for i in order if i not in rows]
            if missing:
                raise RecordError(f"{self.partial}: {len(missing)} rows missing (first: {missing[0]})")
            n = write_jsonl(self.out, (rows[i] for i in order))
            self.partial.unlink()
            return n
        self.partial.replace(self.out)
        return len(self.done)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


class ShardWriter:
    """Rows to one `.jsonl` file, or to a folder of numbered shards (`00000.jsonl` ...) of `shard_size`
    rows when `out` is not a .jsonl path. Written under `<out>.tmp` and renamed by `finish()`, so the
    output is either complete or absent."""

    def __init__(self, out: str | Path, shard_size: int = 100_000):
        self.out = Path(out)
        self.single = self.out.suffix == ".jsonl"
        self.shard_size = shard_size
        self.tmp = self.out.with_name(self.out.name + ".tmp")
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if not self.single:
            self.tmp.mkdir()
        self.rows = 0
        self._f = open(self.tmp, "w", encoding="utf-8") if self.single else None  # noqa: SIM115 (closed in finish/close)

    def write(self, row: dict) -> None:
        if not self.single and self.rows % self.shard_size == 0:
            self.close()
            self._f = open(self.tmp / f"{self.rows // self.shard_size:05d}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += 1

    def finish(self) -> None:
        self.close()
        if self.single:
            self.tmp.replace(self.out)
            return
        if self.out.exists():
            shutil.rmtree(self.out)
        self.tmp.rename(self.out)

    def close(self, discard: bool = False) -> None:
        """Close the open shard; with `discard`, also remove an unpublished `<out>.tmp` (a failed run
        leaves no half-written output behind)."""
        if self._f is not None and not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
        if discard and self.tmp.exists():
            if self.tmp.is_dir():
                shutil.rmtree(self.tmp)
            else:
                self.tmp.unlink()

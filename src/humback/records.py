"""JSONL rows on disk: reading with located errors, and kill-safe writing.

Every stage writes its rows through `RowWriter`: rows go to `<out>.partial`, flushed and fsynced per
batch, and the file is renamed to `<out>` only when the stage is complete. A killed stage leaves a
`.partial` whose last line may be cut; `RowWriter` drops that torn tail and reports which ids are
already done, so the rerun produces only the missing rows: none lost, none repeated.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from humback.errors import HumbackError
from humback.files import (
    OWNED,
    atomic_write,
    disk_errors,
    ensure_dir,
    open_append,
    publish,
    refuse_link,
    sweep_temps,
    temp_path,
)
from humback.files import (
    discard as discard_tmp,
)


class RecordError(HumbackError):
    """A row file that is missing or malformed; the message names the file and line."""


class BadLine(RecordError):
    """One line that is not a usable JSON value; `kind` names the problem for counting."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


# A \uD800-\uDFFF escape: JSON allows it, but a lone surrogate cannot be written out as UTF-8 again.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def parse_json_line(raw: bytes) -> object:
    """One JSONL line -> its value, or BadLine: invalid UTF-8, invalid JSON (including integers too long to
    convert and nesting too deep to parse), or a lone UTF-16 surrogate in a string."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadLine("invalid_utf8", f"invalid UTF-8 at byte {e.start}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadLine("malformed_json", f"not valid JSON ({e.msg})") from None
    except (ValueError, RecursionError) as e:  # 4,300+ digit integers; "[[[[..." deeper than the parser goes
        raise BadLine("malformed_json", f"not valid JSON ({type(e).__name__}: {str(e)[:80]})") from None
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadLine("invalid_unicode", "a lone UTF-16 surrogate (\\udXXX) in a string") from None
    return value


def capped_lines(f, max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) of a binary file, reading at most `max_bytes` of any line into memory; a longer
    line is skipped through and given as None."""
    lineno = 0
    while True:
        raw = f.readline(max_bytes + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            while True:  # skip the rest of the line, a block at a time
                rest = f.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
            yield lineno, None
            continue
        yield lineno, raw


def json_lines(f, max_bytes: int) -> Iterator[tuple[int, object]]:
    """(line number, value) for each non-blank line of a binary JSONL file: the one line reader every JSONL
    input goes through. A line that is not a usable JSON value, or is longer than `max_bytes` (skipped
    through, never held whole), comes as a BadLine for the caller to raise or count."""
    for lineno, raw in capped_lines(f, max_bytes):
        if raw is None:
            yield lineno, BadLine("document_too_large", f"line longer than {max_bytes:,} bytes")
        elif raw.strip():
            try:
                yield lineno, parse_json_line(raw)
            except BadLine as e:
                yield lineno, e


MAX_LINE_BYTES = 64 << 20  # stage files: a row this large is not one humback wrote


def read_jsonl(
    path: str | Path, required: tuple[str, ...] = (), unique_ids: bool = False, strings: tuple[str, ...] = ()
) -> Iterator[dict]:
    """Yield rows of a JSONL file, or of every *.jsonl file in a folder (sorted). A malformed line is a
    RecordError naming file and line; so is a key of `strings` that holds no string; with `unique_ids`, an
    id that is not a string or integer, and a second row with the same id (its row would otherwise be lost:
    outputs are keyed by id)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise RecordError(f"{path} holds no .jsonl files")
    elif path.is_file():
        files = [path]
    else:
        raise RecordError(f"{path} does not exist")
    seen: dict[str, str] = {}
    for file in files:
        with open(file, "rb") as f:
            for lineno, row in json_lines(f, MAX_LINE_BYTES):
                if isinstance(row, BadLine):
                    raise RecordError(f"{file}:{lineno}: {row}")
                if not isinstance(row, dict):
                    raise RecordError(f"{file}:{lineno}: expected a JSON object, got {type(row).__name__}")
                missing = [k for k in required if row.get(k) is None]
                if missing:
                    raise RecordError(f"{file}:{lineno}: missing key(s) {', '.join(missing)}")
                wrong = [k for k in strings if k in row and not isinstance(row[k], str)]
                if wrong:
                    raise RecordError(
                        f"{file}:{lineno}: key '{wrong[0]}' must be a string, got "
                        f"{type(row[wrong[0]]).__name__}"
                    )
                if unique_ids:
                    if not isinstance(row.get("id"), (str, int)) or isinstance(row.get("id"), bool):
                        raise RecordError(
                            f"{file}:{lineno}: key 'id' must be a string or an integer, got "
                            f"{type(row.get('id')).__name__}"
                        )
                    key = str(row.get("id"))
                    if key in seen:
                        raise RecordError(
                            f"{file}:{lineno}: duplicate id {key!r} (first at {seen[key]}); ids must be "
                            "unique: rows are matched by id"
                        )
                    seen[key] = f"{file.name}:{lineno}"
                yield row


def read_json(path: str | Path, keys: tuple[str, ...] = (), fix: str = "") -> object:
    """A JSON file humback wrote (metrics, a training record), or a RecordError naming the file and what is
    wrong: unreadable, not JSON, or (with `keys`) not an object holding each of them. `fix` says how to
    make it again."""
    path = Path(path)
    hint = f"; {fix}" if fix else ""
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise RecordError(f"{path}: cannot be read ({e.strerror}){hint}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise RecordError(f"{path}: not valid JSON ({type(e).__name__}: {str(e)[:80]}){hint}") from None
    if keys:
        if not isinstance(value, dict):
            raise RecordError(f"{path}: expected a JSON object, got {type(value).__name__}{hint}")
        missing = [k for k in keys if k not in value]
        if missing:
            raise RecordError(f"{path}: missing key(s) {', '.join(missing)}{hint}")
    return value


def is_number(x) -> bool:
    """A finite int or float (not a bool): what a hand-edited JSON value must be to be plotted or ranked."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


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


class RowWriter:
    """Append rows to `<out>.partial`; `finish()` renames it to `<out>`.

    `done` holds the ids already written by an earlier, killed run. `settings` (what the rows depend on:
    model, prompts, sampling) is kept beside the partial file; a rerun with other settings starts over
    instead of mixing rows of the two.
    """

    def __init__(self, out: str | Path, settings: dict | None = None, log=print):
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.settings_file = self.out.with_name(self.out.name + ".partial.settings.json")
        ensure_dir(self.out.parent)
        for path in (self.out, self.partial, self.settings_file):
            refuse_link(path)
        self.done: set[str] = set()
        stamp = json.dumps(settings or {}, sort_keys=True, default=str)
        if self.partial.exists():
            old = self.settings_file.read_text(encoding="utf-8") if self.settings_file.exists() else None
            if old is not None and old != stamp:
                log(f"[resume] {self.partial} was written with other settings; starting it over")
                self.partial.unlink()
            else:
                self._recover()
        if not self.settings_file.exists() or self.settings_file.read_text(encoding="utf-8") != stamp:
            atomic_write(self.settings_file, stamp)
        self._f = open_append(self.partial)  # held open across writes; closed in finish/close

    def _recover(self) -> None:
        data = self.partial.read_bytes()
        keep = data[: data.rfind(b"\n") + 1]  # a kill can cut the last line: drop the torn tail
        good = bytearray()
        for line in keep.splitlines(keepends=True):
            try:
                row = parse_json_line(line)
            except BadLine:
                break  # a garbled line can only come from a torn write; everything after it is redone
            if not isinstance(row, dict) or row.get("id") is None:
                break  # not a row this writer wrote: redo from here
            if row["id"] in self.done:
                continue
            self.done.add(row["id"])
            good += line
        if len(good) != len(data):
            atomic_write(self.partial, bytes(good))  # never a half-rewritten partial file

    def write(self, rows: Iterable[dict]) -> None:
        for row in rows:
            if row["id"] in self.done:
                continue
            with disk_errors(self.partial):
                self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.done.add(row["id"])
        with disk_errors(self.partial):
            self._f.flush()
            os.fsync(self._f.fileno())

    def finish(self, order: list[str]) -> list[dict]:
        """Close and publish the rows in `order` (ids), so a resumed run's file equals an uninterrupted
        one's; an id missing from the partial file is an error. Returns the rows as written."""
        self._f.close()
        rows = {r["id"]: r for r in read_jsonl(self.partial)}
        missing = [i for i in order if i not in rows]
        if missing:
            raise RecordError(f"{self.partial}: {len(missing)} rows missing (first: {missing[0]})")
        done = [rows[i] for i in order]
        write_jsonl(self.out, done)
        self.partial.unlink()
        self.settings_file.unlink(missing_ok=True)
        return done

    def close(self) -> None:
        if not self._f.closed:
            try:
                self._f.close()
            except OSError:
                pass  # a full disk: the rows that did reach the file are recovered by the rerun


SHARD_NAME = re.compile(r"\d{5}\.jsonl")


class ShardWriter:
    """Rows to one `.jsonl` file, or to a folder of numbered shards (`00000.jsonl` ...) of `shard_size`
    rows when `out` is not a .jsonl path. Written under a fresh temporary name beside `out` and renamed by
    `finish()`, so the output is either complete or absent."""

    def __init__(self, out: str | Path, shard_size: int = 100_000):
        self.out = Path(out)
        self.single = self.out.suffix == ".jsonl"
        self.shard_size = shard_size
        self._check_out()
        sweep_temps(self.out)  # what a killed writer of this output left
        self.tmp = temp_path(self.out, folder=not self.single)
        self.rows = 0
        self._f = open(self.tmp, "w", encoding="utf-8") if self.single else None  # noqa: SIM115 (closed in finish/close)

    def _check_out(self) -> None:
        # finish() replaces the output folder: refuse one that holds anything but our own shards, so a
        # careless --out (a home folder, the corpus itself) is never deleted.
        refuse_link(self.out)
        if not self.single and self.out.is_file():
            raise RecordError(
                f"output {self.out} is an existing file: give a .jsonl path or a folder for shards"
            )
        if self.single and self.out.is_dir():
            raise RecordError(f"output {self.out} is a folder: give a new .jsonl path")
        if not self.single and self.out.is_dir():
            foreign = [
                p.name for p in self.out.iterdir() if not SHARD_NAME.fullmatch(p.name) and p.name != OWNED
            ]
            if foreign:
                raise RecordError(
                    f"output folder {self.out} holds other files ({', '.join(sorted(foreign)[:3])}"
                    f"{', ...' if len(foreign) > 3 else ''}); it would be replaced: give a new or "
                    "empty folder, or a .jsonl file"
                )

    def write(self, row: dict) -> None:
        path = self.tmp
        with disk_errors(path):
            if not self.single and self.rows % self.shard_size == 0:
                self.close()
                path = self.tmp / f"{self.rows // self.shard_size:05d}.jsonl"
                self._f = open(path, "x", encoding="utf-8")  # noqa: SIM115 (a new file in our own temp folder)
            self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += 1

    def finish(self) -> None:
        with disk_errors(self.tmp):
            self.close()
        self._check_out()  # again: the folder may have changed while the rows were written
        if not self.single and self.out.is_dir():
            shutil.rmtree(self.out)  # our shards only (checked just above)
        publish(self.tmp, self.out)

    def close(self, discard: bool = False) -> None:
        """Close the open shard; with `discard`, also remove the unpublished temporary output (a failed run
        leaves no half-written output behind, a full disk included)."""
        if self._f is not None and not self._f.closed:
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()
            except OSError:
                if not discard:
                    raise
                try:
                    self._f.close()
                except OSError:
                    pass
        if discard and (self.tmp.exists() or self.tmp.is_symlink()):
            discard_tmp(self.tmp)

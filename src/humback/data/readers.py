"""Corpus readers: every input form streamed as `Document`s, one at a time (memory does not grow with
the corpus), with bad input counted and skipped, or fatal under `strict`.

Forms: a hub dataset id streamed through `datasets` (falcon-refinedweb, Dolma, FineWeb: text field
configurable); local JSONL (plain, .gz, .zst) and Parquet files or folders of them; HTML files; WARC
files (.warc, .warc.gz) through warcio (HTML responses and WET text conversions).
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from humback.hub import is_hub_id
from humback.records import BadLine, RecordError, json_lines, parse_json_line

HTML_SUFFIXES = (".html", ".htm")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".ndjson")
WARC_SUFFIXES = (".warc", ".warc.gz")
# Bytes of one record (a JSONL line, an HTML file, a WARC record, a .json file) read at most: larger ones
# are skipped before they are held whole (max_record_bytes of the seed or segment section).
MAX_RECORD_BYTES = 20_000_000


@dataclass
class Document:
    doc_id: str
    source: str  # the file or hub id it came from
    url: str
    location: str  # "file:line" or "file@offset": where to look when something is wrong
    text: str | None = None
    html: str | None = None


class Problems:
    """Counts malformed input by kind; warns with the location (first few of each kind), or raises at
    the first one when strict."""

    def __init__(
        self,
        strict: bool = False,
        log: Callable[[str], None] = print,
        max_warnings: int = 5,
        stage: str = "segment",
    ):
        self.strict, self.log, self.max_warnings, self.stage = strict, log, max_warnings, stage
        self.counts: Counter = Counter()

    def __call__(self, kind: str, location: str, detail: str) -> None:
        if self.strict:
            raise RecordError(
                f"{location}: {detail} (--strict stops at the first bad input; drop it to skip and count)"
            )
        self.counts[kind] += 1
        if self.counts[kind] <= self.max_warnings:
            self.log(self.warning(location, detail))
        elif self.counts[kind] == self.max_warnings + 1:
            self.log(f"[{self.stage}] warning: more '{kind}' problems; counting them silently")

    def warning(self, location: str, detail: str) -> str:
        return f"[{self.stage}] warning: {location}: {detail}; skipped"

    def merge(self, counts: dict[str, int], warnings: list[tuple[str, str]]) -> None:
        """Add another reader's counts (a Ray worker's, for one file) and show its warnings as if they were
        this one's: the first few of each kind."""
        shown: Counter = Counter()
        for kind, message in warnings:
            if self.counts[kind] + shown[kind] < self.max_warnings:
                self.log(message)
            shown[kind] += 1
        self.counts.update(counts)


class CollectedProblems(Problems):
    """Problems of one file read away from the driver: counted, the first warnings of each kind kept for
    the driver to show (Problems.merge)."""

    def __init__(self, strict: bool, max_warnings: int = 5):
        super().__init__(strict, log=lambda message: None, max_warnings=max_warnings)
        self.warnings: list[tuple[str, str]] = []

    def __call__(self, kind: str, location: str, detail: str) -> None:
        super().__call__(kind, location, detail)  # raises when strict
        if self.counts[kind] <= self.max_warnings:
            self.warnings.append((kind, self.warning(location, detail)))


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in JSONL_SUFFIXES + WARC_SUFFIXES + HTML_SUFFIXES + (".parquet",):
        if name.endswith(s):
            return s
    return path.suffix.lower()


class _ZstdStream(io.RawIOBase):
    """A .zst file read frame after frame, in small steps (a highly compressed input cannot blow up in
    memory), that raises EOFError when the last frame is cut short: zstandard's stream reader returns
    what it has and stays silent about a truncated file."""

    STEP = 2048  # compressed bytes per step: zstd's worst ratio (~32,000:1) keeps a step under 64 MB

    def __init__(self, path: Path):
        import zstandard

        self._new = zstandard.ZstdDecompressor().decompressobj
        self._raw = open(path, "rb")  # noqa: SIM115 (closed in close())
        self._d = self._new()
        self._buf = b""
        self._started = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            data = self._raw.read(self.STEP)
            if not data:
                if self._started and not self._d.eof:
                    raise EOFError("truncated zstd stream: the last frame is incomplete")
                return 0
            while data:
                if self._d.eof:  # the next frame of a multi-frame file
                    self._d = self._new()
                self._started = True
                self._buf += self._d.decompress(data)
                data = self._d.unused_data if self._d.eof else b""
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_binary(path: Path):
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".zst"):
        return io.BufferedReader(_ZstdStream(path), buffer_size=1 << 16)
    return open(path, "rb")


def jsonl_rows(
    path: Path, problems: Problems, max_bytes: int = MAX_RECORD_BYTES
) -> Iterator[tuple[str, object]]:
    """(location, parsed line) for each line of a JSONL file (plain, .gz or .zst); undecodable lines,
    lines over `max_bytes` (skipped through, never held whole) and a truncated compressed stream are
    reported with their line and skipped."""
    lineno = 0
    try:
        with _open_binary(path) as f:
            for lineno, row in json_lines(f, max_bytes):
                where = f"{path}:{lineno}"
                if isinstance(row, BadLine):
                    hint = (
                        " (max_record_bytes of the seed or segment section)"
                        if row.kind == "document_too_large"
                        else ""
                    )
                    problems(row.kind, where, f"{row}{hint}")
                    continue
                yield where, row
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        problems(
            "truncated_file", f"{path}:{lineno + 1}", f"unreadable compressed data ({type(e).__name__}: {e})"
        )
    except Exception as e:  # zstandard.ZstdError and other decoder errors of a damaged file
        if type(e).__module__.split(".")[0] != "zstandard":
            raise
        problems("truncated_file", f"{path}:{lineno + 1}", f"damaged zstd data ({e})")


def read_jsonl_docs(
    path: Path, text_field: str, problems: Problems, max_bytes: int = MAX_RECORD_BYTES
) -> Iterator[Document]:
    for where, row in jsonl_rows(path, problems, max_bytes):
        text = row.get(text_field) if isinstance(row, dict) else None
        if not isinstance(text, str):
            problems("missing_text", where, f"no string field '{text_field}' (set segment.text_field)")
            continue
        yield Document(
            str(row.get("id", where.rsplit("/", 1)[-1])),
            str(path),
            str(row.get("url") or ""),
            where,
            text=text,
        )


def read_parquet_docs(path: Path, text_field: str, problems: Problems) -> Iterator[Document]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        problems("unreadable_parquet", str(path), f"not a readable Parquet file ({e})")
        return
    if text_field not in pf.schema_arrow.names:
        problems("missing_text", str(path), f"no column '{text_field}' (set segment.text_field)")
        return
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        cols = batch.to_pydict()
        ids, urls = cols.get("id"), cols.get("url")
        for i, text in enumerate(cols[text_field]):
            row += 1
            if isinstance(text, str):
                doc_id = str(ids[i]) if ids else f"{path.name}:{row}"
                yield Document(
                    doc_id, str(path), str(urls[i] or "") if urls else "", f"{path}#row{row}", text=text
                )


def read_html_doc(path: Path, problems: Problems, max_bytes: int = MAX_RECORD_BYTES) -> Iterator[Document]:
    size = path.stat().st_size
    if size > max_bytes:  # checked before reading: the file is never held whole
        problems(
            "document_too_large", str(path), f"HTML file of {size:,} bytes exceeds segment.max_record_bytes"
        )
        return
    try:
        html = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        problems("invalid_utf8", f"{path}@{e.start}", "invalid UTF-8")
        return
    yield Document(path.stem, str(path), path.name, str(path), html=html)


def read_warc_docs(path: Path, problems: Problems, max_bytes: int = MAX_RECORD_BYTES) -> Iterator[Document]:
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    with open(path, "rb") as f:
        records = ArchiveIterator(f)
        offset = 0
        try:
            for rec in records:
                if rec.rec_type == "response":
                    ctype = rec.http_headers.get_header("Content-Type", "") if rec.http_headers else ""
                    if "html" not in ctype.lower():
                        continue
                elif rec.rec_type != "conversion":  # WET conversions hold already extracted plain text
                    continue
                # Read at most max_bytes + 1: a gzip-encoded body can inflate a thousandfold.
                body = rec.content_stream().read(max_bytes + 1)
                offset = records.get_record_offset()  # only after the body: asking first consumes it
                if len(body) > max_bytes:
                    problems(
                        "document_too_large",
                        f"{path}@{offset}",
                        f"WARC record body over {max_bytes:,} bytes (max_record_bytes of the seed or segment "
                        f"section)",
                    )
                    continue
                if getattr(rec.raw_stream, "limit", 0):  # bytes the header promised but the file lacks
                    problems("truncated_file", f"{path}@{offset}", "truncated WARC record")
                    continue
                url = rec.rec_headers.get_header("WARC-Target-URI") or ""
                rid = rec.rec_headers.get_header("WARC-Record-ID") or f"{path.name}@{offset}"
                where = f"{path}@{offset}"
                if rec.rec_type == "response":
                    try:
                        html = body.decode("utf-8")
                    except UnicodeDecodeError:
                        html = body.decode("latin-1")  # legacy pages: readable text beats a dropped page
                    yield Document(rid, str(path), url, where, html=html)
                else:
                    try:
                        text = body.decode("utf-8")
                    except UnicodeDecodeError as e:
                        problems("invalid_utf8", where, f"invalid UTF-8 at byte {e.start}")
                        continue
                    yield Document(rid, str(path), url, where, text=text)
        except (ArchiveLoadFailed, EOFError, zlib.error, OSError) as e:
            problems("truncated_file", f"{path}@{offset}", f"damaged or truncated WARC ({type(e).__name__})")


def read_hub_docs(
    dataset_id: str, text_field: str, problems: Problems, split: str = "train"
) -> Iterator[Document]:
    """Stream a hub dataset (needs network; `datasets` caches nothing to disk in streaming mode)."""
    from datasets import load_dataset

    try:
        stream = load_dataset(dataset_id, split=split, streaming=True)
    except Exception as e:  # datasets raises many types for unreachable or unknown datasets
        raise RecordError(f"cannot stream hub dataset '{dataset_id}': {e}") from e
    for i, row in enumerate(stream):
        text = row.get(text_field)
        if not isinstance(text, str):
            problems(
                "missing_text",
                f"{dataset_id}#row{i}",
                f"no string field '{text_field}' (set segment.text_field)",
            )
            continue
        yield Document(
            str(row.get("id", i)), dataset_id, str(row.get("url") or ""), f"{dataset_id}#row{i}", text=text
        )


def files_of(path: Path) -> list[Path]:
    known = JSONL_SUFFIXES + WARC_SUFFIXES + HTML_SUFFIXES + (".parquet",)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and _suffix(p) in known)
    return [path]


def iter_documents(
    corpus: str | Path,
    text_field: str = "text",
    problems: Problems | None = None,
    max_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[Document]:
    """Every document of a corpus: a file, a folder (recursively, sorted), or a hub dataset id."""
    problems = problems or Problems()
    path = Path(corpus)
    if not path.exists():
        if is_hub_id(str(corpus)):
            yield from read_hub_docs(str(corpus), text_field, problems)
            return
        raise RecordError(
            f"corpus {corpus} not found: give a file or folder (HTML, WARC, JSONL, Parquet), "
            "a hub dataset id, or 'demo'"
        )
    for file in corpus_files(path):
        yield from file_documents(file, text_field, problems, max_bytes)


def corpus_files(path: Path) -> list[Path]:
    """The files of a local corpus (a file, or a folder's files recursively, sorted): its order."""
    files = files_of(path)
    if not files:
        raise RecordError(
            f"corpus folder {path} holds no .html, .warc[.gz], .jsonl[.gz|.zst] or .parquet files"
        )
    return files


def file_documents(
    file: Path, text_field: str, problems: Problems, max_bytes: int = MAX_RECORD_BYTES
) -> Iterator[Document]:
    """Every document of one corpus file, by its type."""
    kind = _suffix(file)
    if kind in HTML_SUFFIXES:
        yield from read_html_doc(file, problems, max_bytes)
    elif kind in WARC_SUFFIXES:
        yield from read_warc_docs(file, problems, max_bytes)
    elif kind == ".parquet":
        yield from read_parquet_docs(file, text_field, problems)
    elif kind in JSONL_SUFFIXES:
        yield from read_jsonl_docs(file, text_field, problems, max_bytes)
    else:
        raise RecordError(
            f"{file}: unknown corpus file type; expected .html, .warc[.gz], .jsonl[.gz|.zst] or .parquet"
        )


def read_rows(
    path: Path, problems: Problems, max_bytes: int = MAX_RECORD_BYTES
) -> Iterator[tuple[str, dict]]:
    """(location, row) for every object in a JSONL[.gz|.zst], JSON (a list), CSV or Parquet file."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        row = 0
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
                for item in batch.to_pylist():
                    row += 1
                    yield f"{path}#row{row}", item
        except (OSError, pa.ArrowException) as e:
            raise RecordError(f"{path}#row{row + 1}: not a readable Parquet file ({str(e)[:120]})") from None
    elif name.endswith((".csv", ".csv.gz")):
        import csv

        # Python's csv refuses fields over 128 KB by default; responses can be longer, records cannot be
        # longer than max_bytes.
        csv.field_size_limit(max_bytes)
        lineno = 1
        try:
            with io.TextIOWrapper(_open_binary(path), encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f)
                for item in reader:
                    lineno = reader.line_num
                    yield f"{path}:{lineno}", item
        except UnicodeDecodeError as e:
            raise RecordError(
                f"{path}: invalid UTF-8 after line {lineno} (byte {e.start} of a block)"
            ) from None
        except csv.Error as e:
            raise RecordError(f"{path}:{lineno + 1}: malformed CSV ({e})") from None
    elif name.endswith((".json", ".json.gz")) and not name.endswith(".jsonl.gz"):
        with _open_binary(path) as f:
            raw = f.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise RecordError(
                f"{path}: JSON document over {max_bytes:,} bytes; use JSONL (one object per line)"
            )
        try:
            data = parse_json_line(raw)
        except BadLine as e:
            raise RecordError(f"{path}: not a valid JSON document ({e})") from None
        if not isinstance(data, list):
            raise RecordError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
        for i, item in enumerate(data):
            yield f"{path}[{i}]", item
    else:
        yield from jsonl_rows(path, problems, max_bytes)


def count_records(path: Path) -> int:
    """How many records a local file holds, without parsing them: Parquet's metadata, a JSONL file's
    non-empty lines, a CSV's rows, a JSON list's items, one per HTML page. WARC files are estimated by
    `humback plan` from their bytes."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if _suffix(path) in HTML_SUFFIXES:
        return 1
    if name.endswith((".json", ".json.gz")) and not name.endswith(".jsonl.gz"):
        return sum(1 for _ in read_rows(path, Problems(log=lambda _: None)))
    with _open_binary(path) as f:
        lines = sum(1 for line in f if line.strip())
    return lines - 1 if name.endswith((".csv", ".csv.gz")) else lines  # a CSV's header


def hub_rows(dataset_id: str, split: str) -> int | None:
    """A hub dataset split's row count from its metadata (nothing downloaded), or None when unpublished."""
    from datasets import load_dataset_builder

    try:
        info = load_dataset_builder(dataset_id).info
    except Exception as e:  # datasets raises many types for unreachable or unknown datasets
        raise RecordError(f"cannot read hub dataset '{dataset_id}': {e}") from e
    found = (info.splits or {}).get(split)
    return found.num_examples if found is not None and found.num_examples else None


def count_documents(corpus: str | Path, text_field: str = "text") -> tuple[int | None, str]:
    """How many documents a corpus holds and how that was told: 'counted', 'estimated from bytes' (WARC
    files, by the first one's documents per byte), 'hub metadata', or (None, why) when it cannot be told."""
    path = Path(corpus)
    if not path.exists():
        if is_hub_id(str(corpus)):
            rows = hub_rows(str(corpus), "train")
            return (rows, "hub metadata") if rows else (None, "the hub publishes no row count for it")
        raise RecordError(f"corpus {corpus} not found")
    files = corpus_files(path)
    warcs = [f for f in files if _suffix(f) in WARC_SUFFIXES]
    total = sum(count_records(f) for f in files if f not in warcs)
    if not warcs:
        return total, "counted"
    first = sum(1 for _ in read_warc_docs(warcs[0], Problems(log=lambda _: None)))
    per_byte = first / max(1, warcs[0].stat().st_size)
    return total + round(per_byte * sum(f.stat().st_size for f in warcs)), "estimated from bytes"

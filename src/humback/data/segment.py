"""Unlabelled text -> segments: the candidate responses y_i of self-augmentation.

Paper §2.1: a segment is the text under an HTML header, sub-headers included; segments of 600-3,000
characters are kept; segments with repetitive sentences (n-gram Jaccard between sentence pairs), empty or
all-uppercase headers, or navigation headers are dropped; duplicates are removed (the paper does not say
how: here exact normalised hashes, then MinHash LSH for near-duplicates across the whole run).

Web pages go through main-content extraction first (data/extract.py, `segment.extractor`), then the header
cut (data/sections.py); a section too long to keep whole becomes windows of its paragraphs under its
header path (`segment.long_sections: split`) or is dropped as the paper does (`drop`). Plain text (JSONL,
Parquet, WET, hub datasets) is cut into windows of whole paragraphs, one line being one paragraph.
Optional document filters from datatrove (data/quality.py) run last.

One pass over the corpus, one document in memory at a time; the dedup index grows with the *kept*
segments only, and seeded sampling to N keeps a reservoir of N.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from importlib import resources
from itertools import islice
from pathlib import Path

from tqdm.auto import tqdm

from humback.config import SegmentConfig
from humback.data.dedup import Deduplicator
from humback.data.extract import extractor_version, page_blocks
from humback.data.quality import quality_filters
from humback.data.readers import CollectedProblems, Problems, corpus_files, file_documents, iter_documents
from humback.data.sections import html_sections, text_paragraphs, windows
from humback.records import RecordError, ShardWriter
from humback.stats import SegmentStats

# fn(item) for every corpus file, results in file order (ray_runner.ordered_map bound to its cluster).
FileMap = Callable[[Callable, list], Iterator]

# Paper §2.1 names "advertisement", "forum", "quick link", "free newsletter"; the rest are the same kind.
NAV_HEADERS = (
    "advertisement",
    "forum",
    "quick link",
    "free newsletter",
    "newsletter",
    "related article",
    "related post",
    "comments",
    "share this",
    "cookie",
    "sponsored",
    "sign up",
    "log in",
    "menu",
    "navigation",
    "footer",
    "recent posts",
    "popular posts",
    "follow us",
    "subscribe",
)
# Whole lines that are site furniture rather than content; removed before the length filter.
BOILERPLATE_LINE = re.compile(
    r"^(?:.{0,40}\b(?:we|this (?:site|website)) uses? cookies\b.*|.*\baccept (?:all )?cookies\b.*"
    r"|(?:©|\(c\)|copyright)\s.{0,120}|.{0,80}\ball rights reserved\.?"
    r"|(?:share|tweet|pin|email|print)(?: (?:this|on|via|by) [\w .]{0,30})?[.!]?"
    r"|(?:share on \w+[.,]? ?){2,}.*|(?:click here|read more|continue reading)\b.{0,40})$",
    re.IGNORECASE,
)
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n")


def demo_corpus_path() -> Path:
    return Path(str(resources.files("humback") / "resources" / "demo" / "corpus"))


def header_problem(header: str) -> str | None:
    if not header.strip():
        return "empty_header"
    letters = [c for c in header if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return "uppercase_header"
    low = header.lower()
    if any(n in low for n in NAV_HEADERS):
        return "navigation_header"
    return None


def _ngrams(sentence: str, n: int = 3) -> frozenset:
    words = re.findall(r"\w+", sentence.lower())
    return frozenset(zip(*(words[i:] for i in range(n)))) if len(words) >= n else frozenset([tuple(words)])


def repetitive(text: str, jaccard: float = 0.6, max_fraction: float = 0.3, window: int = 12) -> bool:
    """True when more than `max_fraction` of the sentences repeat an earlier one: word-trigram Jaccard
    >= `jaccard` with one of the `window` sentences before it (repeats in boilerplate are close by)."""
    sents = [s for s in SENTENCE_SPLIT.split(text) if s.strip()]
    if len(sents) < 4:
        return False
    grams = [_ngrams(s) for s in sents]
    sizes = [len(g) for g in grams]
    repeats = 0
    for j in range(1, len(grams)):
        for i in range(max(0, j - window), j):
            small, large = sorted((sizes[i], sizes[j]))
            if small < jaccard * large:  # Jaccard <= small/large: this pair cannot reach the threshold
                continue
            inter = len(grams[i] & grams[j])
            if inter and inter / (sizes[i] + sizes[j] - inter) >= jaccard:
                repeats += 1
                break
    return repeats / len(sents) > max_fraction


def segment_id(url: str, header_path: list[str], text: str) -> str:
    """Stable content id: the same segment gets the same id wherever and however often it is read."""
    return hashlib.sha256(f"{url}|{'/'.join(header_path)}|{text}".encode()).hexdigest()[:16]


def boilerplate_line(line: str) -> bool:
    """A cookie, copyright, share or 'read more' line: removed before the windows and length filter."""
    return bool(BOILERPLATE_LINE.match(line.strip()))


def document_pieces(
    doc, cfg: SegmentConfig, funnel: Counter, problems: Problems
) -> Iterator[tuple[list[str], str, list[int] | None]]:
    """(header path, text, character span in the document or None) of every candidate segment of one
    document, before the quality filters: header sections of a page (long ones as windows under their
    header path, or whole to be dropped, by segment.long_sections), windows of paragraphs for plain text."""
    if doc.html is not None:
        if len(doc.html) > cfg.max_html_chars:
            problems(
                "document_too_large",
                doc.location,
                f"HTML page of {len(doc.html):,} characters exceeds "
                f"segment.max_html_chars={cfg.max_html_chars:,}",
            )
            return
        try:
            title, blocks = page_blocks(doc.html, cfg.extractor)
        except Exception as e:  # noqa: BLE001 (each HTML library rejects hostile markup with its own types)
            problems(
                "unparseable_html",
                doc.location,
                f"{cfg.extractor} cannot parse the page ({type(e).__name__}: {str(e)[:100]})",
            )
            return
        kept = [(level, text) for level, text in blocks if level or not boilerplate_line(text)]
        funnel["boilerplate_lines_removed"] += len(blocks) - len(kept)
        chars = sum(len(text) for _, text in kept)
        if not chars:
            funnel["pages_without_main_text"] += 1
            return
        if chars > cfg.max_document_chars:
            problems(
                "document_too_large",
                doc.location,
                f"main text of {chars:,} characters exceeds "
                f"segment.max_document_chars={cfg.max_document_chars:,}",
            )
            return
        for path, paras, whole in html_sections(
            title, kept, cfg.min_chars, cfg.max_chars, cfg.long_sections == "split"
        ):
            if whole:
                yield path, "\n".join(paras), None
            else:
                funnel["long_sections_split"] += 1
                for text, _, _ in windows([(p, 0, 0) for p in paras], cfg.min_chars, cfg.max_chars):
                    yield path, text, None
        return
    if len(doc.text) > cfg.max_document_chars:
        problems(
            "document_too_large",
            doc.location,
            f"document of {len(doc.text):,} characters exceeds "
            f"segment.max_document_chars={cfg.max_document_chars:,}",
        )
        return
    lines = text_paragraphs(doc.text)
    content = [p for p in lines if not boilerplate_line(p[0])]
    funnel["boilerplate_lines_removed"] += len(lines) - len(content)
    for text, start, end in windows(content, cfg.min_chars, cfg.max_chars):
        yield [], text, [start, end]


class SegmentFilter:
    """The paper's segment filters, then language and datatrove's checks: (text to keep, why it is
    dropped or None). Dedup comes after, in corpus order (segment), so its index holds kept segments only
    and a parallel run decides as a serial one does."""

    def __init__(self, cfg: SegmentConfig):
        self.cfg = cfg
        self.identify = None
        if cfg.lang:
            import py3langid

            self.identify = py3langid.classify
        self.checks = quality_filters(cfg.quality_filters, cfg.lang)

    def __call__(self, header_path: list[str], text: str) -> tuple[str, str | None]:
        cfg = self.cfg
        reason = header_problem(header_path[-1]) if header_path else None
        if reason is None and not cfg.min_chars <= len(text) <= cfg.max_chars:
            reason = "too_short" if len(text) < cfg.min_chars else "too_long"
        if reason is None and repetitive(text):
            reason = "repetitive"
        # The opening 500 characters tell the language as well as the whole and cost a fraction.
        if reason is None and self.identify is not None and self.identify(text[:500])[0] != cfg.lang:
            reason = "language"
        for name, check in self.checks:
            if reason is None:
                kept_text = check(text)
                if kept_text is None:
                    reason = name
                elif kept_text != text:  # the C4 filter removes lines: the rest must still be long enough
                    text = kept_text
                    reason = "too_short" if len(text) < cfg.min_chars else None
        return text, reason


class Sampler:
    """Seeded reservoir sampling of `size` rows from a stream (all rows when size is None), given back in
    stream order so the output is reproducible."""

    def __init__(self, size: int | None, seed: int):
        self.size, self.rng = size, random.Random(seed)
        self.seen = 0
        self.reservoir: list[tuple[int, dict]] = []  # (position in the stream, row)

    def offer(self, row: dict) -> dict | None:
        """The row to write now (no sampling), else None (it may be held in the reservoir)."""
        self.seen += 1
        if self.size is None:
            return row
        if len(self.reservoir) < self.size:
            self.reservoir.append((self.seen, row))
        else:
            j = self.rng.randrange(self.seen)
            if j < self.size:
                self.reservoir[j] = (self.seen, row)
        return None

    def held(self) -> list[dict]:
        return [row for _, row in sorted(self.reservoir, key=lambda x: x[0])]


def segment(
    corpus: str | Path,
    out: str | Path,
    cfg: SegmentConfig | None = None,
    *,
    seed: int = 0,
    log: Callable[[str], None] = print,
    map_files: FileMap | None = None,
) -> SegmentStats:
    """Write filtered, deduplicated, optionally sampled segments to `out` (a .jsonl file, or a folder
    of shards otherwise); return the funnel as stage stats. With `map_files` (the Ray runner's, for
    cluster.engine 'ray'), a local corpus's files are extracted and filtered in parallel elsewhere; dedup,
    sampling and writing stay here, in corpus order, so the output and the funnel are the local ones."""
    cfg = cfg or SegmentConfig()
    corpus = demo_corpus_path() if str(corpus) == "demo" else corpus
    source, target = Path(corpus).resolve(), Path(out).resolve()
    if source.exists() and (target == source or source in target.parents or target in source.parents):
        raise RecordError(
            f"output {out} overlaps the corpus {corpus}: the corpus would be overwritten; "
            "write the segments somewhere else"
        )
    problems = Problems(strict=cfg.strict, log=log)
    funnel: Counter = Counter()
    dedup, sampler = Deduplicator(cfg.near_duplicate_threshold), Sampler(cfg.max_segments, seed)
    writer = ShardWriter(out, cfg.shard_size)
    try:
        for rows in _filtered_rows(corpus, cfg, funnel, problems, map_files):
            for row in rows:
                reason = dedup.check_and_add(row["text"])
                if reason:
                    funnel[f"dropped_{reason}"] += 1
                elif sampler.offer(row) is not None:
                    writer.write(row)
        if cfg.max_segments is not None:
            funnel["dropped_sampling"] = sampler.seen - len(sampler.reservoir)
            for row in sampler.held():
                writer.write(row)
        if writer.rows == 0:
            raise RecordError(
                f"no segment of {corpus} passed the filters (funnel: {dict(funnel)}); check "
                f"segment.min_chars/"
                f"max_chars ({cfg.min_chars}-{cfg.max_chars}), segment.lang and that the corpus has text"
            )
        writer.finish()
    finally:
        writer.close(discard=True)  # after finish() there is nothing left to discard
    funnel["kept"] = writer.rows
    return {
        "rows": writer.rows,
        "funnel": dict(funnel),
        "bad_input": dict(problems.counts),
        "extractor": cfg.extractor,
        "extractor_version": extractor_version(cfg.extractor),
        "long_sections": cfg.long_sections,
        "quality_filters": list(cfg.quality_filters),
    }


def _filtered_rows(
    corpus: str | Path, cfg: SegmentConfig, funnel: Counter, problems: Problems, map_files: FileMap | None
) -> Iterator[list[dict]]:
    """The segments that pass the filters (before dedup), a document's or a file's at a time, in corpus
    order; the funnel and bad-input counts as they go."""
    if map_files is None or not Path(corpus).exists():
        # A hub dataset streams here: its files are the hub's to hand out.
        keep = SegmentFilter(cfg)
        docs = iter_documents(corpus, cfg.text_field, problems, cfg.max_record_bytes)
        for doc in tqdm(docs, desc="segment", unit="doc", mininterval=2):
            yield list(kept_segments(doc, cfg, keep, funnel, problems))
        return
    files = corpus_files(Path(corpus))
    for result in tqdm(
        map_files(partial(file_segments, cfg=cfg), files),
        total=len(files),
        desc=f"segment [ray, {len(files)} files]",
        unit="file",
    ):
        funnel.update(result["funnel"])
        problems.merge(result["bad_input"], result["warnings"])
        yield result["rows"]


def file_segments(file: Path, cfg: SegmentConfig) -> dict:
    """One corpus file's filtered segments (before dedup) with its funnel and bad-input counts: the part
    of the stage a Ray worker does."""
    keep, funnel, problems = SegmentFilter(cfg), Counter(), CollectedProblems(cfg.strict)
    rows = [
        row
        for doc in file_documents(file, cfg.text_field, problems, cfg.max_record_bytes)
        for row in kept_segments(doc, cfg, keep, funnel, problems)
    ]
    return {
        "rows": rows,
        "funnel": dict(funnel),
        "bad_input": dict(problems.counts),
        "warnings": problems.warnings,
    }


def kept_segments(
    doc, cfg: SegmentConfig, keep: SegmentFilter, funnel: Counter, problems: Problems
) -> Iterator[dict]:
    """One document's segments that pass `keep`, as output rows; every step counted in `funnel`."""
    funnel["documents"] += 1
    body = doc.html if doc.html is not None else doc.text
    if not body or not body.strip():
        funnel["empty_documents"] += 1
        return
    for header_path, text, offsets in document_pieces(doc, cfg, funnel, problems):
        funnel["segments"] += 1
        text, reason = keep(header_path, text)
        if reason:
            funnel[f"dropped_{reason}"] += 1
            continue
        row = {
            "id": segment_id(doc.url, header_path, text),
            "text": text,
            "source": doc.source,
            "url": doc.url,
            "header_path": header_path,
            "meta": {"doc_id": doc.doc_id, "location": doc.location},
        }
        if offsets:
            row["meta"]["offsets"] = offsets
        yield row


def sample_segments(corpus: str | Path, cfg: SegmentConfig, documents: int) -> dict:
    """What the stage keeps of the first `documents` documents of `corpus` (its filters, and dedup within
    the sample): the rows, the documents read, whether that was the whole corpus, the funnel. What
    `humback plan` extrapolates from."""
    corpus = demo_corpus_path() if str(corpus) == "demo" else corpus
    problems, funnel = Problems(log=lambda _: None), Counter()
    keep, dedup = SegmentFilter(cfg), Deduplicator(cfg.near_duplicate_threshold)
    docs = iter_documents(corpus, cfg.text_field, problems, cfg.max_record_bytes)
    rows = [
        row
        for doc in islice(docs, documents)
        for row in kept_segments(doc, cfg, keep, funnel, problems)
        if not dedup.check_and_add(row["text"])
    ]
    whole = funnel["documents"] < documents or next(docs, None) is None
    return {"rows": rows, "documents": funnel["documents"], "whole": whole, "funnel": dict(funnel)}

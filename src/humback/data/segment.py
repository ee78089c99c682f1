"""Unlabelled text -> segments: the candidate responses y_i of self-augmentation.

Paper §2.1 / METHOD.md §3: a segment is the text under an HTML header, sub-headers included; segments of
600-3,000 characters are kept; segments with repetitive sentences (n-gram Jaccard between sentence
pairs), empty or all-uppercase headers, or navigation headers are dropped; duplicates are removed (the
paper does not say how: here exact normalised hashes, then MinHash LSH for near-duplicates across the
whole run). Plain text (JSONL, Parquet, WET, hub datasets) is cut into windows of whole paragraphs.

One pass over the corpus, one document in memory at a time; the dedup index grows with the *kept*
segments only, and seeded sampling to N keeps a reservoir of N.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import xxhash
from tqdm.auto import tqdm

from humback.config import DataConfig
from humback.data.readers import Problems, iter_documents
from humback.records import RecordError, ShardWriter

HEADERS = ("h1", "h2", "h3", "h4", "h5", "h6")
BLOCKS = ("p", "li", "pre", "blockquote", "td", "dd", "dt")
# Paper §2.1 names "advertisement", "forum", "quick link", "free newsletter"; the rest are the same kind.
NAV_HEADERS = (
    "advertisement", "forum", "quick link", "free newsletter", "newsletter", "related article",
    "related post", "comments", "share this", "cookie", "sponsored", "sign up", "log in", "menu",
    "navigation", "footer", "recent posts", "popular posts", "follow us", "subscribe",
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


def _clean(text: str) -> str:
    return re.sub(r"[ \t]+", " ", re.sub(r"\s*\n\s*", "\n", text)).strip()


def html_sections(html: str) -> Iterator[tuple[list[str], str]]:
    """Yield (header path, text) for every header: the text under it up to the next header of the same
    or a higher level, its sub-headers (as lines) included. Scripts, styles and list items that are
    only a link (menus, link lists) are left out."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    body = soup.body or soup
    blocks: list[tuple[int, str]] = []  # (header level 1-6, or 0 for body text; text)
    for el in body.find_all(list(HEADERS) + list(BLOCKS)):
        if el.name in HEADERS:
            blocks.append((int(el.name[1]), _clean(el.get_text(" "))))
        elif not el.find_parent(list(BLOCKS)):  # nested blocks are counted once, in their outermost block
            if el.name == "li" and _only_links(el):
                continue
            text = _clean(el.get_text(" "))
            if text:
                blocks.append((0, text))
    path: list[tuple[int, str]] = []
    for i, (level, text) in enumerate(blocks):
        if level == 0:
            continue
        path = [p for p in path if p[0] < level] + [(level, text)]
        lines = []
        for sub_level, sub_text in blocks[i + 1:]:
            if 0 < sub_level <= level:
                break
            lines.append(sub_text)
        yield [h for _, h in path], "\n".join(lines)


def _only_links(el) -> bool:
    link_text = "".join(a.get_text() for a in el.find_all("a")).strip()
    return bool(link_text) and len(link_text) >= 0.9 * len(el.get_text().strip())


def text_windows(text: str, max_chars: int) -> Iterator[tuple[str, int, int]]:
    """Greedy windows of whole paragraphs up to max_chars, for corpora without HTML headers:
    (window text, start, end), the character span of the window in `text`."""
    window: list[str] = []
    size = start = end = 0
    for m in re.finditer(r"\S(?:.*?\S)??(?=[ \t]*\n\s*\n|\s*\Z)", text, re.DOTALL):  # paragraphs
        para = m.group()
        if window and size + len(para) > max_chars:
            yield "\n".join(window), start, end
            window, size = [], 0
        if not window:
            start = m.start()
        window.append(para)
        size += len(para) + 1
        end = m.end()
    if window:
        yield "\n".join(window), start, end


def strip_boilerplate(text: str) -> tuple[str, int]:
    """Drop cookie, copyright, share and 'read more' lines; return the text and how many went."""
    kept, removed = [], 0
    for line in text.split("\n"):
        if BOILERPLATE_LINE.match(line.strip()):
            removed += 1
        else:
            kept.append(line)
    return "\n".join(kept), removed


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


class Deduplicator:
    """Exact (normalised text hash) and near-duplicate (MinHash LSH over word 5-grams) detection across
    everything kept so far.

    Signatures come from datasketch's MinHash and the band layout (b bands of r rows) from its
    MinHashLSH for the threshold. The index itself keeps one 64-bit hash per band in a set, not
    datasketch's key lists: dedup only asks "was anything like this kept?", never "which one?", and
    on the 1 GB benchmark corpus (433k kept) the stage peaked at 413 MB, against 1,087 MB with the keyed
    index, with the same decisions.
    """

    def __init__(self, near_threshold: float | None = 0.8, num_perm: int = 64, char_ngrams: int | None = None):
        # char_ngrams: shingle by character n-grams instead (short texts such as instructions, where a
        # few words give too few word 5-grams to compare).
        self.char_ngrams = char_ngrams
        self.exact: set[int] = set()
        self.bands: list[set[int]] = []
        if near_threshold is not None:
            from datasketch import MinHash, MinHashLSH

            layout = MinHashLSH(threshold=near_threshold, num_perm=num_perm)
            self.rows_per_band = layout.r
            self.bands = [set() for _ in range(layout.b)]
            # One set of permutations and a fast 32-bit hash for every signature: building permutations
            # and SHA-1 per shingle were two thirds of the stage's time.
            self._template = MinHash(num_perm=num_perm, seed=1, hashfunc=xxhash.xxh32_intdigest)

    def _signature(self, norm: str):
        from datasketch import MinHash

        t = self._template
        mh = MinHash(num_perm=t.num_perm, seed=t.seed, hashfunc=t.hashfunc, permutations=t.permutations,
                     scheme=t.scheme)
        if self.char_ngrams:
            n = self.char_ngrams
            shingles = {norm[i:i + n].encode() for i in range(max(1, len(norm) - n + 1))}
        else:
            words = norm.split()
            shingles = {" ".join(words[i:i + 5]).encode() for i in range(max(1, len(words) - 4))}
        mh.update_batch(list(shingles))
        return mh.hashvalues

    def check_and_add(self, text: str) -> str | None:
        norm = re.sub(r"\W+", " ", text.lower()).strip()
        digest = xxhash.xxh3_64_intdigest(norm.encode())
        if digest in self.exact:
            return "duplicate"
        self.exact.add(digest)
        if self.bands:
            values, r = self._signature(norm), self.rows_per_band
            keys = [xxhash.xxh3_64_intdigest(values[i * r:(i + 1) * r].tobytes()) for i in range(len(self.bands))]
            if any(k in band for k, band in zip(keys, self.bands)):
                return "near_duplicate"
            for k, band in zip(keys, self.bands):
                band.add(k)
        return None


def segment_id(url: str, header_path: list[str], text: str) -> str:
    """Stable content id: the same segment gets the same id wherever and however often it is read."""
    return hashlib.sha256(f"{url}|{'/'.join(header_path)}|{text}".encode()).hexdigest()[:16]


def segment(corpus: str | Path, out: str | Path, cfg: DataConfig | None = None, seed_value: int = 0,
            log=print) -> dict:
    """Write filtered, deduplicated, optionally sampled segments to `out` (a .jsonl file, or a folder
    of shards otherwise); return the funnel as stage stats."""
    cfg = cfg or DataConfig()
    corpus = demo_corpus_path() if str(corpus) == "demo" else corpus
    problems = Problems(strict=cfg.strict, log=log)
    funnel: Counter = Counter()
    dedup = Deduplicator(cfg.near_duplicate_threshold)
    rng = random.Random(seed_value)
    reservoir: list[tuple[int, dict]] = []
    writer = ShardWriter(out, cfg.shard_size)
    identify = None
    if cfg.segment_lang:
        import py3langid

        identify = py3langid.classify

    def consider(doc, header_path: list[str], text: str) -> dict | None:
        funnel["segments"] += 1
        text, removed = strip_boilerplate(text)
        funnel["boilerplate_lines_removed"] += removed
        reason = header_problem(header_path[-1]) if header_path else None
        if reason is None and not cfg.min_chars <= len(text) <= cfg.max_chars:
            reason = "too_short" if len(text) < cfg.min_chars else "too_long"
        if reason is None and repetitive(text):
            reason = "repetitive"
        # The opening 500 characters tell the language as well as the whole and cost a fraction.
        if reason is None and identify is not None and identify(text[:500])[0] != cfg.segment_lang:
            reason = "language"
        if reason is None:
            reason = dedup.check_and_add(text)
        if reason:
            funnel[f"dropped_{reason}"] += 1
            return None
        return {"id": segment_id(doc.url, header_path, text), "text": text, "source": doc.source, "url": doc.url,
                "header_path": header_path, "meta": {"doc_id": doc.doc_id, "location": doc.location}}

    kept = 0
    try:
        docs = tqdm(iter_documents(corpus, cfg.text_field, problems), desc="segment", unit="doc", mininterval=2)
        for doc in docs:
            funnel["documents"] += 1
            body = doc.html if doc.html is not None else doc.text
            if not body or not body.strip():
                funnel["empty_documents"] += 1
                continue
            if len(body) > cfg.max_document_chars:
                problems("document_too_large", doc.location,
                         f"document of {len(body):,} characters exceeds data.max_document_chars={cfg.max_document_chars:,}")
                continue
            if doc.html is not None:
                pieces = [(path, text, None) for path, text in html_sections(doc.html)]
                if not pieces:
                    problems("html_without_headers", doc.location, "HTML page without any header")
                    continue
            else:  # plain text windows know where they lie in the document
                pieces = [([], w, [start, end]) for w, start, end in text_windows(doc.text, cfg.max_chars)]
            for header_path, text, offsets in pieces:
                row = consider(doc, header_path, text)
                if row is None:
                    continue
                if offsets:
                    row["meta"]["offsets"] = offsets
                kept += 1
                if cfg.max_segments is None:
                    writer.write(row)
                elif len(reservoir) < cfg.max_segments:  # reservoir sampling: a uniform N of a stream
                    reservoir.append((kept, row))
                else:
                    j = rng.randrange(kept)
                    if j < cfg.max_segments:
                        reservoir[j] = (kept, row)
        if cfg.max_segments is not None:
            funnel["dropped_sampling"] = kept - len(reservoir)
            for _, row in sorted(reservoir, key=lambda x: x[0]):  # stream order: output is reproducible
                writer.write(row)
        if writer.rows == 0:
            raise RecordError(
                f"no segment of {corpus} passed the filters (funnel: {dict(funnel)}); check data.min_chars/"
                f"max_chars ({cfg.min_chars}-{cfg.max_chars}), data.segment_lang and that the corpus has text"
            )
        writer.finish()
    finally:
        writer.close(discard=True)  # after finish() there is nothing left to discard
    funnel["kept"] = writer.rows
    return {"rows": writer.rows, "funnel": dict(funnel), "bad_input": dict(problems.counts)}

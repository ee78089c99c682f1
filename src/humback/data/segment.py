"""Unlabelled text -> segments: the candidate responses y_i of self-augmentation.

Paper §2.1 / METHOD.md §3: a segment is the text under an HTML header, sub-headers included; segments of
600-3,000 characters are kept; segments with repetitive sentences, empty or all-uppercase headers, or
navigation headers are dropped; duplicates are removed. Plain-text documents (JSONL with a `text`
field) are split into paragraph windows within the same length bounds.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from humback.records import RecordError, read_jsonl, write_jsonl

HEADERS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Paper §2.1 names "advertisement", "forum", "quick link", "free newsletter"; the rest are the same kind.
NAV_HEADERS = (
    "advertisement", "forum", "quick link", "free newsletter", "newsletter", "related article",
    "related post", "comments", "share this", "cookie", "sponsored", "sign up", "log in", "menu",
    "navigation", "footer", "recent posts", "popular posts", "follow us", "subscribe",
)


def demo_corpus_path() -> Path:
    return Path(str(resources.files("humback") / "resources" / "demo" / "corpus"))


def _clean(text: str) -> str:
    return re.sub(r"[ \t]+", " ", re.sub(r"\s*\n\s*", "\n", text)).strip()


def html_sections(html: str) -> Iterator[tuple[list[str], str]]:
    """Yield (header path, text) for every header: the text under it up to the next header of the same
    or a higher level, its sub-headers (as lines) included."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    body = soup.body or soup
    # Flatten the document into (level, text) blocks: a header is level 1-6, body text is level 0.
    blocks: list[tuple[int, str]] = []
    for el in body.find_all(list(HEADERS) + ["p", "li", "pre", "blockquote", "td"]):
        if el.name in HEADERS:
            blocks.append((int(el.name[1]), _clean(el.get_text(" "))))
        elif not el.find_parent(["p", "li", "pre", "blockquote", "td"]):  # nested blocks counted once
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


def text_windows(text: str, max_chars: int) -> Iterator[str]:
    """Greedy windows of whole paragraphs up to max_chars, for corpora without HTML headers."""
    window: list[str] = []
    size = 0
    for para in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not para:
            continue
        if window and size + len(para) > max_chars:
            yield "\n".join(window)
            window, size = [], 0
        window.append(para)
        size += len(para) + 1
    if window:
        yield "\n".join(window)


def _documents(corpus: Path) -> Iterator[dict]:
    """Yield {doc_id, source, url, html|text} from a folder of .html files or a JSONL file/folder."""
    if corpus.is_dir() and any(corpus.glob("*.htm*")):
        for f in sorted(corpus.glob("*.htm*")):
            yield {"doc_id": f.stem, "source": "html", "url": f.name, "html": f.read_text("utf-8", "replace")}
    elif corpus.exists():
        for i, row in enumerate(read_jsonl(corpus, required=("text",))):
            yield {"doc_id": str(row.get("id", i)), "source": "jsonl", "url": row.get("url", ""), "text": row["text"]}
    else:
        raise RecordError(f"corpus {corpus} not found: give a folder of .html files, a JSONL file with 'text', or 'demo'")


def _header_problem(header: str) -> str | None:
    if not header.strip():
        return "empty_header"
    letters = [c for c in header if c.isalpha()]
    if letters and all(c.isupper() for c in letters) and len(letters) > 1:
        return "uppercase_header"
    low = header.lower()
    if any(n in low for n in NAV_HEADERS):
        return "navigation_header"
    return None


def _repetitive(text: str, threshold: float = 0.3) -> bool:
    """More than `threshold` of the sentences repeat an earlier one (after normalising)."""
    sents = [re.sub(r"\W+", " ", s).strip().lower() for s in re.split(r"(?<=[.!?])\s+|\n", text)]
    sents = [s for s in sents if s]
    return len(sents) >= 4 and 1 - len(set(sents)) / len(sents) > threshold


def segment(
    corpus: str | Path,
    out: str | Path,
    min_chars: int = 600,
    max_chars: int = 3000,
    max_segments: int | None = None,
    seed_value: int = 0,
) -> dict:
    """Write filtered, deduplicated segments to `out`; return the funnel as stage stats."""
    corpus = demo_corpus_path() if str(corpus) == "demo" else Path(corpus)
    funnel: Counter = Counter()
    seen: set[str] = set()
    kept: list[dict] = []
    for doc in _documents(corpus):
        funnel["documents"] += 1
        if "html" in doc:
            pieces = list(html_sections(doc["html"]))
        else:
            pieces = [([], t) for t in text_windows(doc["text"], max_chars)]
        for header_path, text in pieces:
            funnel["segments"] += 1
            reason = _header_problem(header_path[-1]) if header_path else None
            if reason is None and not min_chars <= len(text) <= max_chars:
                reason = "too_short" if len(text) < min_chars else "too_long"
            if reason is None and _repetitive(text):
                reason = "repetitive"
            if reason is None:
                norm = hashlib.sha256(re.sub(r"\W+", " ", text.lower()).strip().encode()).hexdigest()
                if norm in seen:
                    reason = "duplicate"
                seen.add(norm)
            if reason:
                funnel[f"dropped_{reason}"] += 1
                continue
            sid = hashlib.sha256(f"{doc['source']}|{doc['url']}|{'/'.join(header_path)}|{text}".encode()).hexdigest()[:16]
            kept.append({
                "id": sid, "text": text, "source": doc["source"], "url": doc["url"],
                "header_path": header_path, "meta": {"doc_id": doc["doc_id"]},
            })
    if not kept:
        raise RecordError(
            f"no segment of {corpus} passed the filters (funnel: {dict(funnel)}); "
            f"check data.min_chars/max_chars ({min_chars}-{max_chars}) and that the corpus has text"
        )
    if max_segments is not None and len(kept) > max_segments:
        funnel["dropped_sampling"] = len(kept) - max_segments
        kept = random.Random(seed_value).sample(kept, max_segments)
    funnel["kept"] = write_jsonl(out, kept)
    return {"rows": funnel["kept"], "funnel": dict(funnel)}

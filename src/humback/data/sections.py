"""Documents -> candidate segments before any quality filter: header sections of a page, and windows of
whole paragraphs for plain text and for sections too long to keep whole.

Paragraphs are what corpora store: in extracted web text (FineWeb, RefinedWeb, Dolma, C4) a single
newline separates paragraphs, so one line is one paragraph. A paragraph longer than the window is cut at
sentence ends (at spaces for a sentence longer than the window). Windows are balanced: a run of text T
characters long becomes ceil(T / max_chars) windows of about equal size, and a short last window is
evened out with the one before it, so a document of at least `min_chars` is covered almost entirely.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator

from humback.data.extract import Block

# A piece of text with its character span in the document it came from (HTML sections: in the section).
Piece = tuple[str, int, int]

_LINE = re.compile(r"[^\n]+")
# A sentence ends at . ! ? (or their full-width forms), possibly followed by closing quotes/brackets.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"'”’)\]]*\s+")


def text_paragraphs(text: str) -> list[Piece]:
    """Every non-blank line of `text`, stripped, with its span."""
    out = []
    for m in _LINE.finditer(text):
        line = m.group()
        stripped = line.strip()
        if stripped:
            start = m.start() + (len(line) - len(line.lstrip()))
            out.append((stripped, start, start + len(stripped)))
    return out


def _sentence_spans(text: str, max_chars: int) -> list[tuple[int, int]]:
    """(start, end) of each sentence of a paragraph, trailing spaces left out; a sentence longer than
    max_chars is cut at the last space that fits (or hard, for a run without spaces)."""
    bounds = [0] + [m.end() for m in _SENTENCE_END.finditer(text)] + [len(text)]
    spans = []
    for s, e in itertools.pairwise(bounds):
        e = s + len(text[s:e].rstrip())
        while e - s > max_chars:
            cut = text.rfind(" ", s + 1, s + max_chars + 1)
            cut = cut if cut > s else s + max_chars
            spans.append((s, cut))
            s = cut + (text[cut : cut + 1] == " ")
        if e > s:
            spans.append((s, e))
    return spans


def windows(pieces: list[Piece], min_chars: int, max_chars: int) -> list[Piece]:
    """Balanced windows of whole paragraphs (joined by newlines), each at most max_chars long.

    A paragraph that does not fit the open window while that window is still shorter than min_chars (or
    is longer than a window itself) is placed sentence by sentence, so windows do not end short."""
    if not pieces:
        return []
    total = sum(len(p[0]) for p in pieces) + len(pieces) - 1
    target = total / math.ceil(total / max_chars)
    groups: list[list[Piece]] = []
    group: list[Piece] = []
    size = 0

    def close() -> None:
        nonlocal group, size
        if group:
            groups.append(group)
        group, size = [], 0

    for piece in pieces:
        text, base, _ = piece
        add = len(text) + (1 if group else 0)
        if size + add <= max_chars or (len(text) <= max_chars and size >= min_chars):
            if size + add > max_chars:
                close()
                add = len(text)
            group.append(piece)
            size += add
            if size >= target:
                close()
            continue
        part: tuple[int, int] | None = None  # the sentences of this paragraph in the open window
        for s, e in _sentence_spans(text, max_chars):
            if part is not None:
                if size + e - part[1] <= max_chars and size < target:
                    size += e - part[1]
                    part = (part[0], e)
                    continue
                group.append((text[part[0] : part[1]], base + part[0], base + part[1]))
                close()
                part = None
            sep = 1 if group else 0
            if size + sep + e - s > max_chars:
                close()
                sep = 0
            part = (s, e)
            size += sep + e - s
        if part is not None:
            group.append((text[part[0] : part[1]], base + part[0], base + part[1]))
            if size >= target:
                close()
    close()
    if len(groups) > 1 and _size(groups[-1]) < min_chars:
        groups[-2:] = _even_out(groups[-2] + groups[-1], max_chars)
    return [("\n".join(p[0] for p in g), g[0][1], g[-1][2]) for g in groups]


def _size(group: list[Piece]) -> int:
    return sum(len(p[0]) for p in group) + len(group) - 1


def _even_out(parts: list[Piece], max_chars: int) -> list[list[Piece]]:
    """The last two windows' paragraphs as one window if they fit, else split where the smaller side is
    largest (both sides at most max_chars)."""
    if _size(parts) <= max_chars:
        return [parts]
    best, best_cut = -1, 1
    for cut in range(1, len(parts)):
        left, right = _size(parts[:cut]), _size(parts[cut:])
        if left <= max_chars and right <= max_chars and min(left, right) > best:
            best, best_cut = min(left, right), cut
    return [parts[:best_cut], parts[best_cut:]]


def html_sections(
    title: str, blocks: list[Block], min_chars: int, max_chars: int, split_long: bool
) -> Iterator[tuple[list[str], list[str], bool]]:
    """(header path, paragraphs, whole) for the sections of a page, in document order.

    A header's section is the text under it up to the next header of the same or a higher level, its
    sub-headers included as lines (paper §2.1); text before the first header sits under the page title
    (path [] when there is none).

    - `split_long=False`, the paper's literal rule: every header's section is yielded whole (nested
      sections overlap; the length filter drops the long ones), and the text before the first header.
    - `split_long=True`: the same sections, except that one longer than `max_chars` is not yielded whole:
      its sub-sections of at least `min_chars` are sections of their own (the same rule, recursively) and
      the rest of its text (its own paragraphs, and sub-sections too short to stand alone, with their
      header lines) comes as runs to be cut into windows under its header path (whole=False). A title over
      an h1 of the same text is not yielded twice.
    """
    n = len(blocks)
    # Where each header's section ends: the next header of the same or a higher level (one stack pass).
    ends: dict[int, int] = {}
    open_headers: list[int] = []
    for i, (level, _) in enumerate(blocks):
        if level:
            while open_headers and blocks[open_headers[-1]][0] >= level:
                ends[open_headers.pop()] = i
            open_headers.append(i)
    for i in open_headers:
        ends[i] = n
    offset = [0]  # character offsets: a section's length is known without joining it
    for _, text in blocks:
        offset.append(offset[-1] + len(text) + 1)

    def size(start: int, end: int) -> int:
        return offset[end] - offset[start] - 1

    def lines(start: int, end: int) -> list[str]:
        return [t for _, t in blocks[start:end] if t]

    root = [title] if title else []
    if not split_long:
        first_header = min(ends, default=n)
        if first_header:
            yield root, lines(0, first_header), True
        path: list[tuple[int, str]] = []
        for i in sorted(ends):
            path = [p for p in path if p[0] < blocks[i][0]] + [(blocks[i][0], blocks[i][1])]
            headers = [h for _, h in path]
            # Under the page title; an h1 that repeats it adds no level.
            yield (
                (root + headers[1:] if root and headers[0] == title else root + headers),
                lines(i + 1, ends[i]),
                True,
            )
        return

    def children(start: int, end: int) -> list[int]:
        """The header indices directly under a section (the next header after each one's section)."""
        found, k = [], start
        while k < end:
            if blocks[k][0]:
                found.append(k)
                k = ends[k]
            else:
                k += 1
        return found

    def sub_path(header_path: list[str], text: str) -> list[str]:
        # A heading that repeats its parent (an h1 that is the page title) adds no level.
        return header_path if header_path and text == header_path[-1] else header_path + [text]

    def cut(header_path: list[str], start: int, end: int) -> Iterator[tuple[list[str], list[str], bool]]:
        # Recursion goes one header level deeper each time: never more than seven deep (title, h1-h6).
        subs = children(start, end)
        if size(start, end) <= max_chars:
            # Whole, as the paper keeps it; its sub-sections long enough to keep are segments too (the
            # paper's nested sections). A section that is only an h1 repeating the title is that h1's.
            lone = len(subs) == 1 and subs[0] == start and ends[start] == end
            if end > start and not (lone and sub_path(header_path, blocks[start][1]) == header_path):
                yield header_path, lines(start, end), True
            for k in subs:
                if size(k + 1, ends[k]) >= min_chars:
                    yield from cut(sub_path(header_path, blocks[k][1]), k + 1, ends[k])
            return
        run: list[str] = []
        k = start
        while k < end:
            level, text = blocks[k]
            if not level:
                run.append(text)
                k += 1
                continue
            child_end = ends[k]
            if size(k + 1, child_end) >= min_chars:
                if run:
                    yield header_path, run, False
                    run = []
                yield from cut(sub_path(header_path, text), k + 1, child_end)
            else:
                run.extend(lines(k, child_end))
            k = child_end
        if run:
            yield header_path, run, False

    yield from cut(root, 0, n)

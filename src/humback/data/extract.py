"""A web page -> its title and the main content as a flat list of blocks (headers and paragraphs).

The paper cuts pages at HTML headers (§2.1), but a whole page also holds menus, footers, cookie notices
and link lists under headers of their own. Main-content extraction first, by a library made for it
(`segment.extractor`), then the header cut on what is left:

- `trafilatura` (Barbaresi 2021, ACL demo; https://trafilatura.readthedocs.io) decides which paragraphs,
  list items, table rows and quotes are the main text; the page's own headers are put back among them
  (trafilatura keeps only the headings it can place), and a header whose section kept nothing goes.
- `resiliparse` (Bevendorff et al. 2018; https://resiliparse.chatnoir.eu): `extract_plain_text(...,
  main_content=True, preserve_formatting="minimal_html")` keeps `<h1-6>`, `<p>`, lists and `<pre>`.
- `none`: the whole page as it is (every header, paragraph, list item and table cell), the paper's literal
  reading.

BENCHMARKS.md (web_extract) compares them on real pages; the default is chosen from those numbers.
"""

from __future__ import annotations

import re
from typing import Literal

Extractor = Literal["trafilatura", "resiliparse", "none"]

HEADERS = ("h1", "h2", "h3", "h4", "h5", "h6")
BLOCKS = ("p", "li", "pre", "blockquote", "td", "dd", "dt")

MAX_HEADER_CHARS = 300
MAX_MISSES = 64  # extracted paragraphs not found in the page text before the search gives up

# A block: (header level 1-6, or 0 for body text; text). The page title is not a block: the caller
# puts it above every header.
Block = tuple[int, str]

_SPACES = re.compile(r"[^\S\n]+")
_NEWLINES = re.compile(r" ?\n[\s]*")


def clean(text: str) -> str:
    """Collapse runs of spaces (non-breaking ones included) and blank lines; one line per paragraph."""
    return _NEWLINES.sub("\n", _SPACES.sub(" ", text)).strip()


def extractor_version(extractor: Extractor) -> str:
    """The extracting library and its version: a new release may extract differently."""
    from importlib.metadata import version

    library = {"trafilatura": "trafilatura", "resiliparse": "resiliparse", "none": "beautifulsoup4"}[
        extractor
    ]
    return f"{library} {version(library)}"


def page_blocks(html: str, extractor: Extractor = "trafilatura") -> tuple[str, list[Block]]:
    """(title, blocks) of one page's main content, in document order."""
    # Lone surrogates cannot reach the C parsers (or be written out later): replaced, like invalid bytes.
    html = html.encode("utf-8", "replace").decode("utf-8")
    if extractor == "trafilatura":
        return _trafilatura(html)
    if extractor == "resiliparse":
        return _resiliparse(html)
    return _whole_page(html)


def _trafilatura(html: str) -> tuple[str, list[Block]]:
    import trafilatura
    from trafilatura.utils import load_html

    tree = load_html(html)
    if tree is None:
        return "", []
    title = clean(tree.findtext(".//title") or "")
    # trafilatura drops headings it cannot place (on about 40 % of real pages: page-level headings outside
    # the article element, or when its fallback extractors win), so the page's own headers are read
    # first and put back where they stand relative to the extracted paragraphs.
    page, headers = _page_text_and_headers(tree)
    # Comments are reader text, not the page's; tables are kept (their rows read as lines).
    doc = trafilatura.bare_extraction(
        tree, include_comments=False, include_tables=True, include_formatting=True, with_metadata=False
    )
    if doc is None or doc.body is None:
        return title, []
    paragraphs: list[str] = []
    for el in doc.body:
        if el.tag == "head":
            continue  # placed from the page's own headers below
        if el.tag in ("list", "table"):
            # One line per item or row: a list or table is read as the lines it shows.
            paragraphs.extend(
                clean(" ".join(row.itertext()))
                for row in el.iter("item", "row")
                if el.tag == "table" or row.getparent() is el
            )
        else:  # p, quote, code, ...
            paragraphs.append(clean(" ".join(el.itertext())))
    return title, _place_headers(page, headers, [p for p in paragraphs if p])


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _page_text_and_headers(tree) -> tuple[str, list[tuple[int, int, str]]]:
    """The page's visible text, normalised, and its headers as (position in that text, level, text)."""
    from lxml import etree

    body = tree.find(".//body")
    body = tree if body is None else body
    chunks: list[str] = []
    size = 0
    headers: list[tuple[int, int, str]] = []
    skip = 0  # inside script/style: their text is not shown
    for event, el in etree.iterwalk(body, events=("start", "end")):
        tag = el.tag if isinstance(el.tag, str) else ""
        if event == "start":
            if tag in ("script", "style", "noscript", "template"):
                skip += 1
            elif not skip and tag in HEADERS:
                heading = clean(" ".join(el.itertext()))
                if len(heading) <= MAX_HEADER_CHARS:  # longer: markup that wraps body text in a heading tag
                    headers.append((size, int(tag[1]), heading))
            text = el.text if not skip and tag else None
        else:
            if tag in ("script", "style", "noscript", "template"):
                skip -= 1
            text = el.tail if not skip else None
        if text and text.strip():
            piece = _norm(text)
            chunks.append(piece)
            size += len(piece) + 1
    return " ".join(chunks), headers


def _place_headers(page: str, headers: list[tuple[int, int, str]], paragraphs: list[str]) -> list[Block]:
    """The extracted paragraphs in order, with each page header put before the first paragraph after it;
    a header whose section (up to the next header of the same or a higher level) keeps no paragraph
    is left out: it headed menus, share boxes or footers that extraction removed."""
    events: list[tuple[int, int, int, str]] = []  # (position, 0 header / 1 paragraph, level, text)
    cursor = misses = 0
    for text in paragraphs:
        # A found paragraph moves the cursor on, so those searches add up to one pass over the page; a
        # missed one (text the extractor rewrote) scans to the end, so only the first few are looked for.
        found = page.find(_norm(text)[:80], cursor) if misses < MAX_MISSES else -1
        if found >= 0:
            cursor = found + 1
        else:  # placed where the last one was
            misses += 1
        events.append((max(cursor - 1, 0), 1, 0, text))
    events.extend((pos, 0, level, text) for pos, level, text in headers)
    events.sort(key=lambda e: (e[0], e[1]))
    # Keep a header when a paragraph lies in its section: walk with the open header path, and mark the
    # whole path (parents included) at each paragraph.
    keep = [bool(kind) for _, kind, _, _ in events]
    path: list[int] = []
    for i, (_, kind, level, _) in enumerate(events):
        if kind:
            for h in path:
                keep[h] = True
        else:
            while path and events[path[-1]][2] >= level:
                path.pop()
            path.append(i)
    blocks: list[Block] = []
    previous_header = ""
    for i, (_, kind, level, text) in enumerate(events):
        if not keep[i]:
            continue
        if kind and _norm(text) == previous_header:
            continue  # the heading's own text, which extraction kept as a paragraph
        blocks.append((0 if kind else level, text))
        previous_header = "" if kind else _norm(text)
    return blocks


def _resiliparse(html: str) -> tuple[str, list[Block]]:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    if _may_be_deep(html):
        _check_depth(tree)
    title = clean(tree.title or "")
    minimal = extract_plain_text(
        tree, main_content=True, preserve_formatting="minimal_html", list_bullets=False, alt_texts=False
    )
    body = HTMLTree.parse(minimal).body
    blocks: list[Block] = []
    # Walked through `next` links: indexing `child_nodes` costs time quadratic in the number of children.
    node = body.first_child if body is not None else None
    while node is not None:
        tag, text, node = node.tag, node.text, node.next
        if tag in HEADERS:
            blocks.append((int(tag[1]), clean(text)))
        else:  # paragraphs, lists (one line per item), pre-formatted text and bare text between them
            blocks.extend((0, line) for line in clean(text).split("\n") if line)
    return title, [b for b in blocks if b[1] or b[0]]  # empty headers still cut (and are counted)


class HTMLTooDeep(ValueError):
    """Elements nested deeper than MAX_DEPTH: no real page is, and extraction time grows with depth."""


# libxml2 (under lxml, so under trafilatura) stops at this depth too.
MAX_DEPTH = 256


# Tags whose end the parser infers (a new <p> closes the last, <li> the last item, ...) and void tags: not
# counted when estimating nesting from the raw markup.
_SELF_CLOSING = frozenset(
    [
        "p",
        "li",
        "dt",
        "dd",
        "tr",
        "td",
        "th",
        "thead",
        "tbody",
        "tfoot",
        "option",
        "optgroup",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "br",
        "hr",
        "img",
        "input",
        "meta",
        "link",
        "area",
        "base",
        "col",
        "embed",
        "param",
        "source",
        "track",
        "wbr",
        "rt",
        "rp",
    ]
)
_TAG = re.compile(rb"<(/?)([a-zA-Z][a-zA-Z0-9-]*)[^>]*?(/?)>")


def _may_be_deep(html: str) -> bool:
    """A cheap upper bound on nesting from the raw markup (open minus close tags, leaving out tags that
    close themselves): when it stays within MAX_DEPTH the page cannot be deeper, and the DOM walk is
    skipped."""
    depth = peak = 0
    for close, name, selfclose in _TAG.findall(html.encode("utf-8", "replace")):
        if selfclose or name.lower().decode() in _SELF_CLOSING:
            continue
        depth = max(0, depth - 1) if close else depth + 1
        peak = max(peak, depth)
        if peak > MAX_DEPTH:
            return True
    return False


def _check_depth(tree) -> None:
    """Walk resiliparse's DOM once (next/parent links, no recursion); raise HTMLTooDeep past MAX_DEPTH:
    its main-content heuristics take minutes on 100,000 nested elements."""
    node, depth = tree.document, 0
    while node is not None:
        child = node.first_child
        if child is not None:
            node, depth = child, depth + 1
            if depth > MAX_DEPTH:
                raise HTMLTooDeep(f"elements nested more than {MAX_DEPTH} deep")
            continue
        while node is not None and node.next is None:
            node, depth = node.parent, depth - 1
        node = node.next if node is not None else None


def _whole_page(html: str) -> tuple[str, list[Block]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = clean(soup.title.get_text(" ")) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    body = soup.body or soup
    blocks: list[Block] = []
    # Top-down walk: a header or block is read whole and not descended into, so nested blocks count
    # once (in their outermost block). An explicit stack: deep nesting does not hit the recursion limit.
    stack = list(reversed([c for c in body.children if getattr(c, "name", None)]))
    while stack:
        el = stack.pop()
        if el.name in HEADERS:
            blocks.append((int(el.name[1]), clean(el.get_text(" "))))
        elif el.name in BLOCKS:
            if not (el.name == "li" and _only_links(el)):  # menus and link lists
                blocks.append((0, clean(el.get_text(" "))))
        else:
            stack.extend(reversed([c for c in el.children if getattr(c, "name", None)]))
    return title, [b for b in blocks if b[1] or b[0]]


def _only_links(el) -> bool:
    link_text = "".join(a.get_text() for a in el.find_all("a")).strip()
    return bool(link_text) and len(link_text) >= 0.9 * len(el.get_text().strip())

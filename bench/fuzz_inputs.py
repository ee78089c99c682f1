"""Adversarial HTML against the segmenter: documents tried and the worst time per MB, for every extractor.

Families of hostile pages (deep nesting, unclosed headers, entity floods, thousands of headers, nested
lists, whitespace floods, random tag soup) are built at ~50 KB and ~1 MB. Each page goes through
`page_blocks` + `html_sections` (what `segment` does before its filters), every extractor in turn.

Baseline: the page walk the stage used before this change (BeautifulSoup `find_all` over headers and
blocks, then `find_parent` per block, then a scan of every following block per header), kept here only to
measure it, on the ~50 KB pages (at 1 MB it takes hours). Candidate: the default extractor (trafilatura)
on the same pages. Both run in this one invocation.

    .venv/bin/python bench/fuzz_inputs.py --random 200     # writes bench/results/fuzz_inputs.json
"""

from __future__ import annotations

import argparse
import random
import resource
import time

from record import write_record

from humback.data.extract import page_blocks
from humback.data.sections import html_sections

TEXT = "Volcanoes erupt when magma rises through the crust and the gases in it come out of solution. "


def families(size: int) -> dict[str, str]:
    unit = f"<p>{TEXT}</p>"
    n = max(1, size // 10)
    return {
        "nested_div": "<html><body><h1>T</h1>"
        + "<div>" * (size // 11)
        + unit
        + "</div>" * (size // 11)
        + "</body></html>",
        "unclosed_h1": "<html><body>" + "<h1>x" * (size // 5) + unit + "</body></html>",
        "nbsp_flood": "<html><body><h1>T</h1><p>" + "&nbsp;" * (size // 6) + TEXT + "</p></body></html>",
        "many_headers": "<html><body>"
        + "".join(f"<h{i % 6 + 1}>h{i}</h{i % 6 + 1}>{unit}" for i in range(size // 110))
        + "</body></html>",
        "nested_lists": "<html><body><h1>T</h1>" + "<ul><li>x" * (size // 9) + "</body></html>",
        "whitespace": "<html><body><h1>T</h1><p>" + " \n\t" * (size // 3) + TEXT + "</p></body></html>",
        "many_paragraphs": "<html><body><h1>T</h1>" + unit * (size // len(unit)) + "</body></html>",
        "nested_tables": "<html><body><h1>T</h1>" + "<table><tr><td>" * (n // 2) + TEXT + "</body></html>",
    }


def tag_soup(rng: random.Random, size: int) -> str:
    tags = ["div", "p", "h1", "h2", "h3", "li", "ul", "table", "td", "span", "script", "article", "br"]
    out, total = [], 0
    while total < size:
        roll = rng.random()
        piece = (
            f"<{rng.choice(tags)}>"
            if roll < 0.4
            else f"</{rng.choice(tags)}>"
            if roll < 0.6
            else rng.choice(["&nbsp;", "<!--", "-->", "<![foo[", TEXT, "\n" * 5])
        )
        out.append(piece)
        total += len(piece)
    return "".join(out)


def old_walk(html: str) -> int:
    """The stage's page walk before main-content extraction (measured, not used)."""
    from bs4 import BeautifulSoup

    headers, blocks_tags = (
        ("h1", "h2", "h3", "h4", "h5", "h6"),
        ("p", "li", "pre", "blockquote", "td", "dd", "dt"),
    )
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    body = soup.body or soup
    blocks = []
    for el in body.find_all(list(headers) + list(blocks_tags)):
        if el.name in headers:
            blocks.append((int(el.name[1]), el.get_text(" ")))
        elif not el.find_parent(list(blocks_tags)):
            blocks.append((0, el.get_text(" ")))
    sections = 0
    for i, (level, _) in enumerate(blocks):
        if level:
            for sub_level, _ in blocks[i + 1 :]:
                if 0 < sub_level <= level:
                    break
            sections += 1
    return sections


def run(html: str, extractor: str) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        title, blocks = page_blocks(html, extractor)
        list(html_sections(title, blocks, 600, 3000, True))
        outcome = "ok"
    except Exception as e:  # noqa: BLE001 (what segment would count: the bench reports which)
        outcome = type(e).__name__
    return time.perf_counter() - start, outcome


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--random", type=int, default=200, help="random tag-soup pages of ~100 KB")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tried = 0
    worst: dict[str, tuple[float, str]] = {}
    small = families(50_000)
    baseline_s, candidate_s = [], []
    for name, html in small.items():  # side by side on the ~50 KB pages
        start = time.perf_counter()
        old_walk(html)
        baseline_s.append(time.perf_counter() - start)
        candidate_s.append(run(html, "trafilatura")[0])
        print(f"50 KB {name}: before {baseline_s[-1]:.2f} s, now {candidate_s[-1]:.3f} s", flush=True)
    pages = list(families(1_000_000).items()) + [
        (f"soup{i}", tag_soup(rng, 100_000)) for i in range(args.random)
    ]
    outcomes: dict[str, dict[str, int]] = {}
    for name, html in pages:
        mb = len(html.encode()) / 1e6
        for extractor in ("trafilatura", "resiliparse", "none"):
            seconds, outcome = run(html, extractor)
            tried += 1
            per_mb = seconds / mb
            outcomes.setdefault(extractor, {}).setdefault(outcome, 0)
            outcomes[extractor][outcome] += 1
            if per_mb > worst.get(extractor, (0.0, ""))[0]:
                worst[extractor] = (per_mb, name)
            if not name.startswith("soup"):
                print(f"{mb:.2f} MB {name} {extractor}: {seconds:.2f} s ({outcome})", flush=True)
    base, cand = max(baseline_s), max(candidate_s)
    write_record(
        __file__.replace("fuzz_inputs.py", "results/fuzz_inputs.json"),
        "fuzz_inputs",
        "worst seconds per ~50 KB hostile page (lower is better)",
        round(base, 3),
        round(cand, 3),
        round(base / cand, 1),
        documents_tried=tried,
        worst_seconds_per_mb={k: {"seconds_per_mb": round(v[0], 3), "page": v[1]} for k, v in worst.items()},
        outcomes=outcomes,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        per_family_50kb={
            n: {"before_s": round(b, 3), "now_s": round(c, 3)}
            for n, b, c in zip(small, baseline_s, candidate_s)
        },
    )


if __name__ == "__main__":
    main()

"""Segmentation of real web pages: how much of each page's main text the kept segments hold, and how much
boilerplate leaks in, for the segment stage as it was (whole page, long sections dropped) against the new
default, with trafilatura and resiliparse extraction alone as references.

The pages: a JSONL.gz of {"url", "html", "with": [main-text snippets], "without": [boilerplate snippets]}
(trafilatura's evaluation set; give its path with --pages; it is read, never copied here). Scores, per
page, over the text of the segments kept from it (or the extractor's whole output): `with` recall = share
of `with` snippets found in it, `without` leak = share of `without` snippets found, after collapsing
whitespace and lower-casing; averaged over all snippets of all pages.

Each setting runs the real `segment` stage (filters, dedup, language) over a folder of the pages, one
HTML file each; every setting runs once per round, in rotating order, and pages/s is the median over
rounds.

    .venv/bin/python bench/web_extract.py --pages PAGES.jsonl.gz --rounds 3
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from record import write_record

from humback.config import SegmentConfig
from humback.data.segment import segment

SETTINGS = {
    "before (whole page, long sections dropped)": {"extractor": "none", "long_sections": "drop"},
    "whole page, long sections split": {"extractor": "none", "long_sections": "split"},
    "resiliparse, long sections split": {"extractor": "resiliparse", "long_sections": "split"},
    "trafilatura, long sections dropped": {"extractor": "trafilatura", "long_sections": "drop"},
    "trafilatura, long sections split (default)": {"extractor": "trafilatura", "long_sections": "split"},
    "default + datatrove filters (gopher_repetition, gopher_quality, c4, fineweb)": {
        "extractor": "trafilatura",
        "long_sections": "split",
        "quality_filters": ["gopher_repetition", "gopher_quality", "c4", "fineweb"],
    },
}
BASELINE, CANDIDATE = (
    "before (whole page, long sections dropped)",
    "trafilatura, long sections split (default)",
)


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def score(pages: list[dict], texts: dict[int, str]) -> dict:
    found_with = total_with = found_without = total_without = 0
    for i, page in enumerate(pages):
        text = norm(texts.get(i, ""))
        found_with += sum(norm(s) in text for s in page["with"])
        found_without += sum(norm(s) in text for s in page["without"])
        total_with += len(page["with"])
        total_without += len(page["without"])
    return {
        "with_recall": round(found_with / total_with, 4),
        "without_leak": round(found_without / total_without, 4),
        "pages_with_text": sum(1 for i in range(len(pages)) if texts.get(i)),
    }


def run_stage(folder: Path, out: Path, settings: dict) -> tuple[float, dict[int, str], dict]:
    start = time.perf_counter()
    stats = segment(folder, out, SegmentConfig(**settings), log=lambda s: None)
    seconds = time.perf_counter() - start
    texts: dict[int, list[str]] = defaultdict(list)
    for line in out.read_text().splitlines():
        row = json.loads(line)
        texts[int(row["url"].split(".")[0])].append(row["text"])
    return seconds, {i: "\n".join(t) for i, t in texts.items()}, stats


def run_reference(pages: list[dict], name: str) -> tuple[float, dict[int, str]]:
    if name == "trafilatura.extract alone":
        import trafilatura

        def extract(html):
            return trafilatura.extract(html) or ""
    else:
        from resiliparse.extract.html2text import extract_plain_text

        def extract(html):
            return extract_plain_text(html, main_content=True)

    start = time.perf_counter()
    texts = {i: extract(p["html"]) for i, p in enumerate(pages)}
    return time.perf_counter() - start, texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", required=True, help="the labelled pages, JSONL.gz (url, html, with, without)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "web_extract.json"))
    args = ap.parse_args()
    with gzip.open(args.pages, "rt", encoding="utf-8") as f:
        pages = [json.loads(line) for line in f]
    references = ("trafilatura.extract alone", "resiliparse extract_plain_text(main_content=True) alone")
    timings: dict[str, list[float]] = defaultdict(list)
    scores: dict[str, dict] = {}
    funnels: dict[str, dict] = {}
    names = list(SETTINGS) + list(references)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pages"
        folder.mkdir()
        for i, page in enumerate(pages):
            (folder / f"{i:03d}.html").write_text(page["html"], encoding="utf-8")
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order every round
                if name in SETTINGS:
                    seconds, texts, stats = run_stage(folder, Path(tmp) / "seg.jsonl", SETTINGS[name])
                    funnels[name] = {**stats["funnel"], "bad_input": stats["bad_input"]}
                else:
                    seconds, texts = run_reference(pages, name)
                timings[name].append(seconds)
                scores[name] = score(pages, texts)
                print(f"round {r + 1} {name}: {len(pages) / seconds:.1f} pages/s {scores[name]}", flush=True)
    table = {
        name: {
            **scores[name],
            "pages_per_s": round(len(pages) / statistics.median(timings[name]), 2),
            "seconds": [round(s, 2) for s in timings[name]],
        }
        for name in names
    }
    for name in SETTINGS:
        table[name]["funnel"] = funnels[name]
    base, cand = table[BASELINE], table[CANDIDATE]
    write_record(
        args.out,
        "web_extract",
        "main-text recall of kept segments (with-snippets found)",
        base["with_recall"],
        cand["with_recall"],
        round(cand["with_recall"] / base["with_recall"], 3),
        leak={"baseline": base["without_leak"], "candidate": cand["without_leak"]},
        pages_per_s={"baseline": base["pages_per_s"], "candidate": cand["pages_per_s"]},
        pages=len(pages),
        rounds=args.rounds,
        settings=table,
    )


if __name__ == "__main__":
    main()

"""Segment a generated >= 1 GB JSONL corpus: documents/s and peak RSS of `humback segment`.

Baseline and candidate run side by side in this one invocation, each in its own process (so peak RSS is
each one's own):
- baseline: read the corpus and cut it into paragraph windows, nothing else (the floor: I/O, JSON, split);
- candidate: the full stage (boilerplate lines, length, repetition, language, exact + MinHash dedup,
  sharded output).
The corpus is English-like text made from a fixed vocabulary with a seeded RNG, with 3 % exact duplicate
documents and 3 % near-duplicates (one word changed) so dedup has work to do.

    .venv/bin/python bench/segment_corpus.py --gb 1.0      # writes bench/results/segment_corpus.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "it",
    "for",
    "on",
    "with",
    "as",
    "was",
    "by",
    "at",
    "from",
    "this",
    "be",
    "are",
    "or",
    "an",
    "which",
    "can",
    "when",
    "their",
    "they",
    "not",
    "but",
    "more",
    "have",
    "been",
    "time",
    "water",
    "heat",
    "light",
    "city",
    "plants",
    "colony",
    "river",
    "engine",
    "people",
    "between",
    "each",
    "during",
    "after",
    "before",
    "about",
    "into",
    "over",
    "under",
    "while",
    "because",
    "through",
    "most",
    "many",
    "some",
    "other",
    "these",
    "those",
    "first",
    "new",
    "high",
    "long",
    "small",
    "large",
    "early",
    "later",
    "several",
    "often",
    "usually",
    "system",
    "process",
    "energy",
    "surface",
    "station",
    "market",
    "garden",
    "history",
    "science",
    "kitchen",
    "bridge",
    "network",
    "language",
    "memory",
    "weather",
    "season",
    "village",
    "island",
    "forest",
]


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(9, 18))]
    return " ".join(words).capitalize() + "."


def document(rng: random.Random) -> str:
    paras = [" ".join(sentence(rng) for _ in range(rng.randint(4, 9))) for _ in range(rng.randint(3, 8))]
    return "\n\n".join(paras)


def generate(path: Path, gigabytes: float, seed: int = 0) -> int:
    rng = random.Random(seed)
    target, size, n, recent = gigabytes * 1e9, 0, 0, []
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            roll = rng.random()
            if roll < 0.03 and recent:
                text = rng.choice(recent)  # exact duplicate
            elif roll < 0.06 and recent:
                words = rng.choice(recent).split(" ")
                words[rng.randrange(len(words))] = "different"  # near-duplicate
                text = " ".join(words)
            else:
                text = document(rng)
                recent = (recent + [text])[-50:]
            line = json.dumps({"id": f"doc{n}", "url": f"https://example.org/{n}", "text": text}) + "\n"
            f.write(line)
            size += len(line)
            n += 1
    return n


def run_child(mode: str, corpus: Path, out: Path) -> dict:
    start = time.time()
    if mode == "baseline":
        from humback.data.readers import Problems, iter_documents
        from humback.data.sections import text_paragraphs, windows

        docs = count = 0
        for doc in iter_documents(corpus, "text", Problems()):
            docs += 1
            count += len(windows(text_paragraphs(doc.text), 600, 3000))
        stats = {"documents": docs, "segments": count}
    else:
        from humback.config import SegmentConfig
        from humback.data.segment import segment

        result = segment(corpus, out, SegmentConfig(), log=lambda s: None)
        stats = result["funnel"]
    seconds = time.time() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": round(seconds, 1),
        "docs_per_s": round(stats["documents"] / seconds, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "funnel": stats,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--workdir", default="/tmp/humback-bench")
    ap.add_argument("--child", choices=["baseline", "candidate"])
    args = ap.parse_args()
    work = Path(args.workdir)
    corpus = work / "corpus.jsonl"
    if args.child:
        print(json.dumps(run_child(args.child, corpus, work / "segments")))
        return
    work.mkdir(parents=True, exist_ok=True)
    if not corpus.exists() or corpus.stat().st_size < args.gb * 1e9:
        t = time.time()
        n = generate(corpus, args.gb)
        print(
            f"generated {n:,} documents, {corpus.stat().st_size / 1e9:.2f} GB in {time.time() - t:.0f} s",
            flush=True,
        )
    with open(corpus, "rb") as f:  # warm the page cache, so neither side pays for a cold disk read
        while f.read(1 << 24):
            pass
    results = {}
    for mode in ("baseline", "candidate"):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--workdir", str(work)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(mode, results[mode], flush=True)
    record = {
        "name": "segment_corpus",
        "unit": "documents/s",
        "baseline": results["baseline"]["docs_per_s"],
        "candidate": results["candidate"]["docs_per_s"],
        "ratio": round(results["candidate"]["docs_per_s"] / results["baseline"]["docs_per_s"], 3),
        "candidate_peak_rss_mb": results["candidate"]["peak_rss_mb"],
        "baseline_peak_rss_mb": results["baseline"]["peak_rss_mb"],
        "corpus_bytes": corpus.stat().st_size,
        "details": results,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": date.today().isoformat(),
        "command": f"python bench/segment_corpus.py --gb {args.gb}",
    }
    out = Path(__file__).parent / "results" / "segment_corpus.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()

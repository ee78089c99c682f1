"""`humback view` on a generated run of 500k candidates (2 iterations): how soon the page is ready and
how fast a filtered query answers, with DuckDB reading the run's JSONL once into a database (the viewer) vs
DuckDB querying the JSONL files on every request (the baseline), side by side in one run.

Measured in-process through the app's HTTP interface (FastAPI's TestClient; no network):
- paint and ready: from creating the app to the page's HTML, and to the funnel and the first table page
  served; on the first open of the run (its JSONL read into the viewer's database in humback's cache
  folder) and on a reopen (that database reused);
- filtered query: score range + selected + a full-text search, median of `--repeats` (after one warm-up),
  for both engines.

    .venv/bin/python bench/view_large.py            # writes bench/results/view_large.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from record import write_record

WORDS = [
    "bread",
    "flour",
    "water",
    "salt",
    "yeast",
    "oven",
    "crust",
    "crumb",
    "proof",
    "knead",
    "rye",
    "wheat",
    "starter",
    "dough",
    "loaf",
    "bake",
    "recipe",
    "train",
    "track",
    "station",
    "signal",
    "engine",
    "carriage",
    "timetable",
    "ticket",
    "platform",
    "route",
]


def make_run(root: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(root / "candidates.jsonl", "w") as cand, open(root / "segments.jsonl", "w") as seg:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(90, 400)))
            rid = f"c{i:07d}"
            seg.write(
                json.dumps(
                    {"id": rid, "text": text, "url": f"https://example.org/{i}", "header_path": ["Page"]}
                )
                + "\n"
            )
            cand.write(
                json.dumps(
                    {
                        "id": rid,
                        "instruction": "How do I " + " ".join(rng.choice(WORDS) for _ in range(8)) + "?",
                        "response": text,
                        "segment_id": rid,
                    }
                )
                + "\n"
            )
    for t in (1, 2):
        (root / f"iter{t}").mkdir()
        with (
            open(root / f"iter{t}" / "scored.jsonl", "w") as sc,
            open(root / f"iter{t}" / "selected.jsonl", "w") as se,
        ):
            for i in range(n):
                score = round(rng.uniform(1, 5), 3)
                sc.write(
                    json.dumps(
                        {
                            "id": f"c{i:07d}",
                            "judge_score": score,
                            "score": score,
                            "ifd": rng.random(),
                            "reasoning": "The answer is relevant. Score: 4",
                            "iteration": t,
                        }
                    )
                    + "\n"
                )
                if score >= 4.5:
                    se.write(json.dumps({"id": f"c{i:07d}"}) + "\n")
    (root / "manifest.json").write_text(json.dumps({"name": "view-bench", "stages": {}}))


def baseline_query(root: Path, params: dict) -> int:
    """The same filter, DuckDB reading the JSONL files for the request."""
    import duckdb

    src = lambda p: f"read_json_auto('{p}', format='newline_delimited')"
    return duckdb.execute(
        f"SELECT count(*) FROM {src(root / 'candidates.jsonl')} c JOIN {src(root / 'iter2/scored.jsonl')} s "
        f"USING (id)"
        f" JOIN {src(root / 'iter2/selected.jsonl')} e USING (id) WHERE s.score BETWEEN "
        f"{params['min_score']} AND"
        f" {params['max_score']} AND (c.instruction ILIKE '%{params['q']}%' OR c.response ILIKE "
        f"'%{params['q']}%')"
    ).fetchone()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=500_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="bench/results/view_large.json")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from humback.viewer.server import create_app

    root = Path(tempfile.mkdtemp(prefix="view-bench-"))
    start = time.perf_counter()
    make_run(root, args.candidates)
    size_mb = sum(p.stat().st_size for p in root.rglob("*.jsonl")) / 1e6
    print(
        f"generated {args.candidates} candidates ({size_mb:.0f} MB) in {time.perf_counter() - start:.0f} s",
        flush=True,
    )

    os.environ["HUMBACK_CACHE"] = str(root / "cache")  # a cold start: no copy of this run read before

    def open_run() -> tuple[TestClient, float, float]:
        """(client, seconds to the page's HTML, seconds to the page ready: funnel and first table page)."""
        start = time.perf_counter()
        client = TestClient(create_app(root), base_url="http://127.0.0.1")
        client.get("/")
        paint = time.perf_counter() - start
        client.get("/api/funnel")
        first = client.get("/api/candidates", params={"limit": 50}).json()
        assert first["total"] == args.candidates
        return client, paint, time.perf_counter() - start

    _, first_paint, first_ready = open_run()  # reads the JSONL into the viewer's database (once per run)
    client, paint, ready = open_run()  # the same run again: the database is reused

    params = {
        "iteration": 2,
        "min_score": 4.6,
        "max_score": 4.9,
        "selected": True,
        "q": "oven crust",
        "limit": 50,
    }
    timings = {"candidate": [], "baseline": []}
    matches = {}
    for k in range(args.repeats + 1):
        t0 = time.perf_counter()
        matches["candidate"] = client.get("/api/candidates", params=params).json()["total"]
        t1 = time.perf_counter()
        matches["baseline"] = baseline_query(root, params)
        t2 = time.perf_counter()
        if k:  # the first round warms caches
            timings["candidate"].append(t1 - t0)
            timings["baseline"].append(t2 - t1)
    assert matches["candidate"] == matches["baseline"], matches
    med = {k: statistics.median(v) * 1000 for k, v in timings.items()}
    sorted_ms = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        client.get("/api/candidates", params={"iteration": 2, "sort": "s2_ifd", "desc": True, "limit": 50})
        sorted_ms.append((time.perf_counter() - t0) * 1000)
    write_record(
        args.out,
        "view_large",
        "filtered query ms (lower is better)",
        round(med["baseline"], 1),
        round(med["candidate"], 1),
        round(med["baseline"] / med["candidate"], 1),
        candidates=args.candidates,
        run_mb=round(size_mb),
        first_open_paint_s=round(first_paint, 3),
        first_open_ready_s=round(first_ready, 2),
        reopen_paint_s=round(paint, 3),
        reopen_ready_s=round(ready, 3),
        matches=matches["candidate"],
        sorted_page_ms=round(statistics.median(sorted_ms), 1),
        query=params,
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()

"""The two stages beyond Humpback on real web text: what the rewrite stage does, per backend, and what
diversity-aware selection does to the selected set at equal size.

Workload: the labelled web pages (`--pages`, trafilatura's evaluation set; read from where it lies, never
copied here) segmented as `humback segment` does, one instruction per segment from the default model with
the backward prompt (the base model stands in for a trained M_yx), every candidate scored with the demo's
curation (IFD + end-of-turn log-probability, the fitted weights of configs/demo.yaml). `--run` adds a run
folder's candidates and iteration-1 scores (the demo's) as a second pool. Everything goes through the
response cache in `--work`, so a rerun asks the models nothing again.

- diversity_selection: at equal size k (a fifth of the pool, best first, threshold 1.0 so both sides can
  fill k), today's MinHash-only selection (baseline) vs `curate.diversity` (candidate, all-MiniLM-L6-v2):
  mean pairwise cosine distance of the selected instructions (the headline figure), how many of k k-means
  clusters of the pool's instructions the selection covers, and distinct opening words (a verb, mostly).
- rewrite_stage: `--rewrite-rows` selected rows rewritten by the default model on each backend: parse rate,
  faithfulness pass rate, mean length ratio and rows/s; baseline ctranslate2, candidate openvino.

    .venv/bin/python bench/better_data.py --pages ../shared/data/web-eval/pages.jsonl.gz --run runs/demo
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
from pathlib import Path

import yaml
from record import write_record

from humback.augment import augment
from humback.config import AugmentConfig, CurateConfig, EngineConfig, RewriteConfig, SegmentConfig
from humback.curate import curate
from humback.data.segment import segment
from humback.generation import open_generator
from humback.rewrite import rewrite
from humback.rowloop import LocalRunner

ROOT = Path(__file__).resolve().parents[1]


def web_pool(pages: Path, work: Path, cache: Path) -> tuple[Path, Path]:
    """Candidates and their scores for the labelled pages: (candidates.jsonl, iter folder)."""
    folder = work / "pages"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        with gzip.open(pages, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f):
                (folder / f"{i:03d}.html").write_text(json.loads(line)["html"], encoding="utf-8")
    segments, candidates = work / "segments.jsonl", work / "candidates.jsonl"
    if not segments.is_file():
        segment(folder, segments, SegmentConfig(), log=lambda s: None)
    if not candidates.is_file():
        gen = open_generator(EngineConfig(backend="openvino"), "default", cache)
        augment(segments, LocalRunner(gen), candidates, AugmentConfig(max_new_tokens=48))
    return candidates, work / "scored"


def demo_curation() -> CurateConfig:
    return CurateConfig(**yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["curate"])


def score_pool(candidates: Path, out: Path, cache: Path) -> dict[str, dict]:
    if not (out / "scored.jsonl").is_file():
        gen = open_generator(EngineConfig(backend="ctranslate2"), "default", cache)
        curate(candidates, LocalRunner(gen), out, demo_curation())
    return {r["id"]: r for r in map(json.loads, (out / "scored.jsonl").read_text().splitlines())}


def figures(instructions: list[str], pool_vectors, pool_labels, chosen: list[int]) -> dict:
    import numpy as np

    v = pool_vectors[chosen]
    sim = v @ v.T
    n = len(chosen)
    pairwise = (sim.sum() - n) / (n * (n - 1)) if n > 1 else 1.0
    return {
        "rows": n,
        "mean_pairwise_cosine_distance": round(float(1 - pairwise), 4),
        "clusters_covered": len(np.unique(pool_labels[chosen])),
        "distinct_opening_words": len(
            {instructions[i].split()[0].lower() for i in chosen if instructions[i].split()}
        ),
    }


def diversity(pool: list[dict], scored: dict[str, dict], threshold: float) -> dict:
    from sklearn.cluster import KMeans

    from humback.embeddings import embed
    from humback.scoring import select

    rows = [c for c in pool if scored[c["id"]]["score"] is not None]
    k = max(2, len(rows) // 5)
    instructions = [c["instruction"] for c in rows]
    vectors = embed(instructions, "all-MiniLM-L6-v2")
    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(vectors)
    position = {c["id"]: i for i, c in enumerate(rows)}
    sides = {
        "baseline": CurateConfig(threshold=1.0, max_selected=k),
        "candidate": CurateConfig(threshold=1.0, max_selected=k, diversity=threshold),
    }
    out = {}
    for side, cfg in sides.items():
        chosen = select(rows, scored, cfg)
        out[side] = {
            **figures(instructions, vectors, labels, [position[i] for i in chosen.ids]),
            "passed_over": len(chosen.skipped),
            "mean_score": round(statistics.fmean(scored[i]["score"] for i in chosen.ids), 4),
        }
    return {"pool": len(rows), "k": k, "clusters": k, **out}


def rewrite_backends(
    pool: list[dict], scored: dict[str, dict], rows: int, work: Path, backends: list[str]
) -> dict:
    best = sorted(
        (c for c in pool if scored[c["id"]]["score"] is not None), key=lambda c: -scored[c["id"]]["score"]
    )
    selected = work / "rewrite-input.jsonl"
    selected.write_text(
        "".join(json.dumps({**c, "score": scored[c["id"]]["score"]}) + "\n" for c in best[:rows])
    )
    out = {}
    for backend in backends:
        gen = open_generator(EngineConfig(backend=backend), "default", None)  # uncached: timed
        folder = work / f"rewrite-{backend}-{time.monotonic_ns()}"
        start = time.perf_counter()
        stats = rewrite(selected, LocalRunner(gen), folder, RewriteConfig(enabled=True, max_new_tokens=384))
        seconds = time.perf_counter() - start
        out[backend] = {
            k: stats[k] for k in ("parse_rate", "pass_rate", "mean_length_ratio", "outcome", "rewritten")
        }
        out[backend]["rows_per_s"] = round(rows / seconds, 4)
        print(f"[bench] rewrite on {backend}: {out[backend]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", required=True, help="the labelled web pages, JSONL.gz (html per line)")
    ap.add_argument("--run", help="a finished run folder (e.g. runs/demo): its pool as a second workload")
    ap.add_argument("--work", default="runs/bench-better-data")
    ap.add_argument("--diversity", type=float, default=0.7, help="curate.diversity for the candidate side")
    ap.add_argument("--rewrite-rows", type=int, default=16)
    ap.add_argument("--backends", nargs="+", default=["ctranslate2", "openvino"])
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache" / "responses.sqlite"
    candidates, iter_dir = web_pool(Path(args.pages), work, cache)
    scored = score_pool(candidates, iter_dir, cache)
    pool = [json.loads(line) for line in candidates.read_text().splitlines()]
    pools = {"web-eval pages": diversity(pool, scored, args.diversity)}
    if args.run:
        run = Path(args.run)
        demo_pool = [json.loads(line) for line in (run / "candidates.jsonl").read_text().splitlines()]
        demo_scored = {
            r["id"]: r for r in map(json.loads, (run / "iter1" / "scored.jsonl").read_text().splitlines())
        }
        pools["demo run"] = diversity(demo_pool, demo_scored, args.diversity)
    print(json.dumps(pools, indent=1), flush=True)
    web = pools["web-eval pages"]
    base, cand = (web[s]["mean_pairwise_cosine_distance"] for s in ("baseline", "candidate"))
    write_record(
        Path(args.results) / "diversity_selection.json",
        "diversity_selection",
        "mean pairwise cosine distance of the selected instructions (all-MiniLM-L6-v2), equal size",
        base,
        cand,
        round(cand / base, 3),
        setup={
            "diversity": args.diversity,
            "model": "all-MiniLM-L6-v2",
            "scores": "the demo's curation, default model",
        },
        pools=pools,
    )
    rewrites = rewrite_backends(pool, scored, args.rewrite_rows, work, args.backends)
    base_b, cand_b = args.backends[0], args.backends[-1]
    write_record(
        Path(args.results) / "rewrite_stage.json",
        "rewrite_stage",
        "rewritten rows/s (default model)",
        rewrites[base_b]["rows_per_s"],
        rewrites[cand_b]["rows_per_s"],
        round(rewrites[cand_b]["rows_per_s"] / rewrites[base_b]["rows_per_s"], 3),
        setup={
            "rows": args.rewrite_rows,
            "rewriter": "default (SmolLM2-135M-Instruct)",
            "max_new_tokens": 384,
            "input": "the best-scored web-eval candidates",
        },
        backends=rewrites,
    )


if __name__ == "__main__":
    main()

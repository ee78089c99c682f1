"""Curation seconds per candidate on the default CPU path, with the rubric's state reused against reading
every prompt whole, side by side in one run.

The judge is the default model on CTranslate2 int8 (`generation.backend: auto` on a CPU) scoring with the
demo's method (`expected`, no reasoning: one forward pass over the rubric, the candidate and `Score:`).
Candidates are the 46 bundled demo seed pairs (real instruction/answer pairs). Sides alternate over
`--rounds`; the median seconds per candidate of each side are compared.

    .venv/bin/python bench/curate_prefix.py            # writes bench/results/curate_prefix.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from record import write_record

from humback.config import EngineConfig, SeedConfig
from humback.data.seed import seed_pairs
from humback.generation import load_generator
from humback.prompts import SCORE_PREFIX
from humback.records import read_jsonl
from humback.scoring import CHOICES, judge_messages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="bench/results/curate_prefix.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        seed_pairs("demo", Path(tmp) / "seed.jsonl", SeedConfig(), seed=0, log=lambda s: None)
        pairs = list(read_jsonl(Path(tmp) / "seed.jsonl"))
    gen = load_generator(EngineConfig(backend="ctranslate2", compute_type="int8"), "default")
    prompts = [judge_messages(p["instruction"], p["response"]) for p in pairs]
    conts, choices = [SCORE_PREFIX] * len(prompts), [" " + c for c in CHOICES]
    per: dict[str, list[float]] = {"baseline": [], "candidate": []}
    for r in range(args.rounds):
        for side in ("baseline", "candidate") if r % 2 == 0 else ("candidate", "baseline"):
            gen.reuse_prefix = side == "candidate"
            start = time.perf_counter()
            for c in range(0, len(prompts), gen.chunk_size):  # as `curate` calls it
                gen.next_token_probs(prompts[c : c + gen.chunk_size], conts[c : c + gen.chunk_size], choices)
            per[side].append((time.perf_counter() - start) / len(prompts))
            print(f"round {r + 1} {side:<9} {per[side][-1]:.3f} s/candidate", flush=True)
    base, cand = (round(statistics.median(per[s]), 3) for s in ("baseline", "candidate"))
    write_record(
        args.out,
        "curate_prefix",
        "seconds per candidate (lower is better)",
        base,
        cand,
        round(base / cand, 2),
        ratio_meaning="baseline / candidate (speed-up)",
        setup={
            "judge": "default (SmolLM2-135M-Instruct), ctranslate2 int8",
            "method": "expected",
            "candidates": len(prompts),
            "rounds": args.rounds,
        },
        runs=per,
    )


if __name__ == "__main__":
    main()

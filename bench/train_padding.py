"""Effective (non-padding) training tokens/s: humback's batches against padding every batch to max length.

Both sides train the default model with the demo recipe (LoRA r16, batch 8 = 4 x 2 accumulated, fp32 on
CPU) on the same synthetic pairs whose lengths follow the paper's seed statistics (instruction 148 ± 322,
response 1,072 ± 818 characters; Li et al. 2023, Table 2), words drawn from the bundled demo pages:
- baseline: batches drawn at random and padded to `train.max_length` (2,048 tokens by default), the
  common pad-to-max setup;
- candidate: humback's path as `humback train` runs it (length-grouped batches padded to their longest
  example; padding-free where FlashAttention is available, not on this CPU).
Sides alternate (baseline, candidate, baseline, candidate) so drift hits both; the tokens counted are
non-padding input tokens (Trainer's `num_input_tokens_seen`, "non_padding"), the time is the training
loop's.

    .venv/bin/python bench/train_padding.py            # writes bench/results/train_padding.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
from pathlib import Path

from record import write_record

from humback.config import TrainConfig
from humback.data.segment import demo_corpus_path
from humback.training import sft
from humback.training.sft import train

own_settings = sft.sft_settings


def pairs(n: int, seed: int = 0) -> list[dict]:
    words = re.findall(
        r"[A-Za-z][a-z]+", " ".join(p.read_text() for p in sorted(demo_corpus_path().glob("*.html")))
    )
    rng = random.Random(seed)

    def text(mean: float, std: float, low: int) -> str:
        target = max(low, int(rng.gauss(mean, std)))
        out: list[str] = []
        while sum(len(w) + 1 for w in out) < target:
            out.append(rng.choice(words))
        return " ".join(out).capitalize() + "."

    return [{"instruction": text(148, 322, 20), "response": text(1072, 818, 40)} for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--max-length", type=int, default=2048, help="the baseline pads every batch to this")
    ap.add_argument("--out", default="bench/results/train_padding.json")
    args = ap.parse_args()

    rows = pairs(args.examples)
    cfg = TrainConfig(
        method="lora",
        lr=2e-4,
        batch_size=8,
        micro_batch_size=4,
        max_steps=args.steps,
        max_length=args.max_length,
        save_steps=10_000,
    )
    sides = {
        "baseline": {"pad_to_multiple_of": cfg.max_length, "train_sampling_strategy": "random"},
        "candidate": {},
    }
    runs: dict[str, list[dict]] = {k: [] for k in sides}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        for r in range(args.rounds):
            for name, overrides in sides.items():
                # The baseline's trainer settings: humback's, with the overrides on top.
                sft.sft_settings = lambda *a, overrides=overrides: {**own_settings(*a), **overrides}
                stats = train(
                    [data],
                    "default",
                    Path(tmp) / f"{name}{r}",
                    cfg,
                    direction="forward",
                    seed=r,
                    log=lambda s: None,
                )
                runs[name].append(
                    {
                        "tokens": stats["tokens_seen"],
                        "seconds": stats["seconds"],
                        "tokens_per_s": stats["tokens_per_s"],
                    }
                )
                print(
                    f"round {r + 1} {name:<9} {stats['tokens_seen']:6d} tokens {stats['seconds']:7.1f} s "
                    f"{stats['tokens_per_s']:7.1f} tok/s",
                    flush=True,
                )

    def median(name: str) -> float:
        return round(statistics.median(x["tokens_per_s"] for x in runs[name]), 1)

    base, cand = median("baseline"), median("candidate")
    write_record(
        args.out,
        "train_padding",
        "effective (non-padding) training tokens/s",
        base,
        cand,
        round(cand / base, 2),
        setup={
            "model": "default (SmolLM2-135M-Instruct)",
            "method": "lora",
            "batch": 8,
            "micro_batch": 4,
            "max_length": cfg.max_length,
            "steps_per_run": args.steps,
            "rounds": args.rounds,
            "examples": len(rows),
        },
        runs=runs,
    )


if __name__ == "__main__":
    main()

"""M_t trained on raw vs rewritten selected rows: the rewrite stage's effect on the model, measured.

Two forward models trained from the base model with one recipe (configs/demo.yaml's train section) on the
seed pairs plus the same selected rows: their original web responses (raw) vs the rewrite stage's output
(rewritten.jsonl: a rewrite where one passed the checks, else the original). Each is scored on held-out
pairs (evaluation data only, never trained on): mean reference-answer NLL, greedy answers' length, and the
win rate of rewritten over raw judged by the base model in both orders (evaluate.preferences).

    python bench/rewrite_eval.py --rewrites runs/bench-better-data/rewrite-openvino-*/rewrites.jsonl \\
        --seed runs/demo/seed.jsonl --heldout alpaca_eval.jsonl --response-field output_gpt4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml
from record import write_record

from humback.calibrate import read_pairs
from humback.config import EngineConfig, TrainConfig
from humback.evaluate import answers, mean_nll, preferences, win_rates
from humback.generation import open_generator
from humback.templates import forward_messages
from humback.training.sft import train

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rewrites", required=True, help="a rewrite stage's rewrites.jsonl")
    ap.add_argument("--seed", required=True, help="the seed pairs (a run's seed.jsonl)")
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--response-field", default="response")
    ap.add_argument("--nll-pairs", type=int, default=50)
    ap.add_argument("--answer-pairs", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    rows = [json.loads(line) for line in Path(args.rewrites).read_text().splitlines()]
    rewritten = sum(r["rewrite"]["status"] == "rewritten" for r in rows)
    held = read_pairs(args.heldout, args.response_field)
    nll, ask = held[: args.nll_pairs], held[args.nll_pairs : args.nll_pairs + args.answer_pairs]
    recipe = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["train"]
    cfg = TrainConfig(**recipe)
    engine = EngineConfig(backend="transformers", device="cpu")
    out, texts = {}, {}
    with tempfile.TemporaryDirectory(prefix="humback-bench-") as tmp:
        for side in ("raw", "rewritten"):
            data = Path(tmp) / f"{side}.jsonl"
            data.write_text(
                "".join(
                    json.dumps({**r, "response": r["original_response"] if side == "raw" else r["response"]})
                    + "\n"
                    for r in rows
                )
            )
            start = time.perf_counter()
            stats = train(
                [Path(args.seed), data], "default", Path(tmp) / side, cfg, direction="forward", seed=0
            )
            gen = open_generator(engine, str(Path(tmp) / side), None)
            prompts = [forward_messages(p["instruction"], "inference") for p in nll]
            texts[side] = answers(gen, [p["instruction"] for p in ask], args.max_new_tokens)
            out[side] = {
                "reference_nll": mean_nll(gen, prompts, [p["response"] for p in nll]),
                "mean_answer_chars": round(sum(map(len, texts[side])) / len(ask), 1),
                "last_loss": stats["last_loss"],
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(f"[bench] {side}: {out[side]}", flush=True)
        referee = open_generator(engine, "default", None)
        instructions = [p["instruction"] for p in ask]
        prefs = preferences(referee, instructions, texts["rewritten"], texts["raw"])
        wins = win_rates(prefs, texts["rewritten"], texts["raw"])
        same = sum(a == b for a, b in zip(texts["raw"], texts["rewritten"]))
    print(f"[bench] rewritten vs raw: {wins}; identical answers {same}/{len(ask)}", flush=True)
    write_record(
        Path(args.results) / "rewrite_eval.json",
        "rewrite_eval",
        "held-out reference-answer NLL, nats/token (lower is better)",
        out["raw"]["reference_nll"],
        out["rewritten"]["reference_nll"],
        round(out["rewritten"]["reference_nll"] / out["raw"]["reference_nll"], 4),
        setup={
            "rows": len(rows),
            "rewritten": rewritten,
            "seed": args.seed,
            "train": recipe,
            "nll_pairs": len(nll),
            "answer_pairs": len(ask),
        },
        sides=out,
        win_rate_rewritten_vs_raw=wins,
        identical_answers=same,
    )


if __name__ == "__main__":
    main()

"""Judge calibration on held-out data: how well each curation signal of the default model separates good
candidates from bad ones.

1. Fit: the demo seed pairs (bundled, 46) with negatives built from them (`humback calibrate --fit`):
   logistic weights over IFD, end-of-turn log-probability and the rubric's expected score.
2. Evaluate on AlpacaEval (never trained or tuned on): the first `--pairs` instructions with their GPT-4
   answers as good rows, and three negatives each (another row's answer; the answer cut to its first
   30 %; navigation, cookie and share lines spliced in). Every signal's ROC-AUC, overall and per kind.
3. The rubric judge alone by each scoring method (sample, greedy, mean-of-k, expected with reasoning) on
   the first `--judge-pairs` of them: AUC and parse-failure rate (sampled replies cost ~128 decoded
   tokens each on this CPU, hence the smaller set).

The default model on CTranslate2 int8 (the CPU default). Every reply goes through a response cache in
`--work`, so a killed run resumes. The record compares the paper's rubric judge (sample) with the
default curation configuration (`configs/demo.yaml`'s combination).

    .venv/bin/python bench/calibrate_judges.py --eval alpaca_eval.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from record import write_record

from humback.calibrate import calibrate, read_pairs
from humback.config import CurateConfig, EngineConfig
from humback.data.seed import seed_pairs
from humback.generation import open_generator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval", required=True, help="AlpacaEval JSONL (instruction, output_gpt4)")
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--judge-pairs", type=int, default=40)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--work", default="runs/bench-calibrate")
    ap.add_argument("--out", default="bench/results/calibrate_judges.json")
    args = ap.parse_args()
    work = Path(args.work)
    gen = open_generator(EngineConfig(backend="auto"), "default", work / "cache" / "responses.sqlite")

    def run(
        name: str, data, cfg: CurateConfig, response_field: str = "response", limit: int | None = None, **kw
    ) -> dict:
        res = calibrate(
            read_pairs(data, response_field, limit), gen, work / name, cfg, source=str(data), **kw
        )
        print(f"[bench] {name}: {json.dumps(res['signals'])}", flush=True)
        return res

    seed_pairs("demo", work / "seed.jsonl")
    expected = CurateConfig(method="expected", max_new_tokens=0, ifd=True)
    fitted = run("fit-seed-judge", work / "seed.jsonl", expected, fit=["ifd", "end_logprob", "judge_score"])
    fitted_ifd_end = run("fit-seed", work / "seed.jsonl", expected, fit=["ifd", "end_logprob"])
    weights = fitted_ifd_end["fit"]["combine"]
    combined = run(
        "alpaca-combined",
        args.eval,
        expected.model_copy(update={"combine": weights, "threshold": 3.0}),
        response_field="output_gpt4",
        limit=args.pairs,
    )
    with_judge = run(
        "alpaca-combined-judge",
        args.eval,
        expected.model_copy(update={"combine": fitted["fit"]["combine"], "threshold": 3.0}),
        response_field="output_gpt4",
        limit=args.pairs,
    )
    methods = {}
    for method in ("sample", "greedy", "mean-of-k", "expected"):
        cfg = CurateConfig(method=method, k=3, max_new_tokens=args.max_new_tokens)
        methods[method] = run(
            f"alpaca-{method}", args.eval, cfg, response_field="output_gpt4", limit=args.judge_pairs
        )

    def row(res: dict, signal: str) -> dict:
        return {
            **res["signals"][signal],
            "parse_failure_rate": res.get("parse_failure_rate", 0.0)
            if signal in ("score", "judge_score")
            else 0.0,
            "rows": res["rows"],
        }

    table = {
        "combined (ifd, end_logprob), fitted on demo seed": row(combined, "score"),
        "combined (ifd, end_logprob, judge expected), fitted on demo seed": row(with_judge, "score"),
        "ifd alone": row(combined, "ifd"),
        "end_logprob alone": row(combined, "end_logprob"),
        "response nll alone": row(combined, "nll"),
        "rubric expected, no reasoning": row(with_judge, "judge_score"),
        **{f"rubric {m} ({args.max_new_tokens} tokens)": row(r, "judge_score") for m, r in methods.items()},
    }
    paper = table[f"rubric sample ({args.max_new_tokens} tokens)"]["auc"]
    ours = table["combined (ifd, end_logprob), fitted on demo seed"]["auc"]
    write_record(
        args.out,
        "calibrate_judges",
        "ROC-AUC (AlpacaEval GPT-4 answers vs 3 kinds of built negatives)",
        paper,
        ours,
        round(ours / paper, 3),
        table=table,
        weights=weights,
        weights_with_judge=fitted["fit"]["combine"],
        selection=combined["selection"],
        pairs=args.pairs,
        judge_pairs=args.judge_pairs,
        judge="default (CTranslate2 int8)",
    )


if __name__ == "__main__":
    main()

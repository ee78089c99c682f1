"""`humback plan` against what a run did: per stage rows, tokens and seconds, planned vs actual.

Plans the recipe first (with --measure, timing every stage here on sample rows), then runs it (or reads a
run that already finished with the same recipe), and counts the run's tokens with the plan's own
definitions on its real rows: augment's backward prompts and written instructions, curate's forward
passes and judge prompts, the rewriter's prompts and replies, and each train stage's tokens_seen.

    python bench/plan_accuracy.py configs/demo.yaml --run runs/demo
    python bench/plan_accuracy.py configs/demo.yaml --set segment.corpus=runs/bench-better-data/pages \\
        --set segment.max_segments=null --name web --run runs/plan-web
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from record import write_record

from humback.config import load_config
from humback.pipeline import run_pipeline
from humback.plan import Tokens, plan
from humback.rewrite import REWRITE_START
from humback.scoring import judge_messages
from humback.templates import backward_messages, rewrite_messages

ROOT = Path(__file__).resolve().parent.parent


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def actual_tokens(cfg, run: Path, manifest: dict, tokens: Tokens) -> dict[str, int]:
    """Each stage's tokens as the plan counts them, on the run's real rows."""
    out: dict[str, int] = {}
    segments, candidates = rows(run / "segments.jsonl"), rows(run / "candidates.jsonl")
    out["augment prompt"] = sum(tokens.prompt(backward_messages(s["text"])) for s in segments)
    out["augment generated"] = sum(tokens.count(c["instruction"]) + 1 for c in candidates)
    c = cfg.curate
    for t in range(1, cfg.iterations + 1):
        scored = {r["id"]: r for r in rows(run / f"iter{t}" / "scored.jsonl")}
        judged = [x for x in candidates if not scored.get(x["id"], {}).get("skipped")]
        total = 0
        if c.judged:
            total += sum(tokens.prompt(judge_messages(x["instruction"], x["response"])) for x in judged)
        if c.forward_signals:
            total += sum(
                2 * (tokens.count(x["response"]) + 1) + tokens.count(x["instruction"]) + 1 for x in judged
            )
        out[f"curate:{t} prompt"] = total
        if cfg.rewrite.enabled:
            done = rows(run / f"iter{t}" / "rewrites.jsonl")
            begin = REWRITE_START if cfg.rewrite.begin_reply else ""
            out[f"rewrite:{t} prompt"] = sum(
                tokens.prompt(rewrite_messages(d["instruction"], d["original_response"], begin)) for d in done
            )
            out[f"rewrite:{t} generated"] = sum(
                tokens.count(d["rewrite"].get("reply") or d["rewrite"].get("text") or d["response"]) + 1
                for d in done
            )
    for key, st in manifest["stages"].items():
        if key.startswith("train:"):
            out[f"{key} train"] = st["stats"]["tokens_seen"]
    return out


def planned_tokens(p: dict) -> dict[str, int]:
    out = {}
    for key, st in p["stages"].items():
        if "prompt_tokens" in st:
            out[f"{key} prompt"] = st["prompt_tokens"]
            if st["generated_tokens"]["max"]:
                out[f"{key} generated"] = st["generated_tokens"]["expected"]
        if "train_tokens" in st:
            out[f"{key} train"] = st["train_tokens"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--run", required=True, help="the run folder (run here unless it finished already)")
    ap.add_argument(
        "--name", default=None, help="this workload's name in the results (default: the config's)"
    )
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    cfg = load_config(args.config, args.set)
    p = plan(cfg, measure=True)
    run = Path(args.run)
    manifest = run_pipeline(cfg, run)  # a finished run with this recipe skips every stage
    tokens = Tokens(cfg.model)
    want, got = planned_tokens(p), actual_tokens(cfg, run, manifest, tokens)
    table = {
        k: {"plan": want[k], "actual": got[k], "ratio": round(want[k] / got[k], 3) if got[k] else None}
        for k in want
        if k in got
    }
    ran = {k: st for k, st in manifest["stages"].items() if st.get("seconds") is not None}
    times = {
        k: {
            "plan": p["stages"][k]["seconds"]["measured"],
            "actual": st["seconds"],
            "ratio": round(p["stages"][k]["seconds"]["measured"] / st["seconds"], 3)
            if st["seconds"]
            else None,
        }
        for k, st in ran.items()
        if k in p["stages"]
    }
    rows_ = {
        k: {"plan": p["stages"][k]["rows"], "actual": st["stats"].get("rows", st["stats"].get("examples"))}
        for k, st in ran.items()
    }
    for name, part in (("tokens", table), ("seconds", times)):
        print(f"[bench] {name}:")
        for k, v in part.items():
            print(f"  {k:<22} plan {v['plan']:>10} actual {v['actual']:>10} ratio {v['ratio']}")
    print(f"[bench] rows: {rows_}")
    token_ratios = [v["ratio"] for v in table.values() if v["ratio"]]
    slow = [k for k, st in ran.items() if st["seconds"] >= 5 and k in times]  # sub-5 s stages are noise
    time_ratios = [times[k]["ratio"] for k in slow]
    plan_total, actual_total = sum(times[k]["plan"] for k in slow), sum(times[k]["actual"] for k in slow)
    name = args.name or cfg.name
    write_record(
        Path(args.results) / f"plan_accuracy_{name}.json",
        f"plan_accuracy_{name}",
        "seconds of the stages that took 5 s or more: plan (--measure) vs actual",
        round(actual_total, 1),
        round(plan_total, 1),
        round(plan_total / actual_total, 3),
        tokens=table,
        seconds=times,
        rows=rows_,
        token_ratio_range=[min(token_ratios), max(token_ratios)],
        token_within_10pct=sum(abs(r - 1) <= 0.10 for r in token_ratios),
        token_figures=len(token_ratios),
        time_ratio_median=statistics.median(time_ratios),
        time_within_30pct=sum(abs(r - 1) <= 0.30 for r in time_ratios),
        time_stages=len(time_ratios),
        plan_totals=p["totals"],
    )


if __name__ == "__main__":
    main()

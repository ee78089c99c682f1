"""`humback plan` against what a run did: per stage rows, tokens and seconds, planned vs actual.

Plans the recipe first (with --measure, timing every stage here on sample rows), then runs it (or reads a
run that already finished with the same recipe), and sets the plan beside what the run's manifest
recorded: rows, seconds, the metered prompt and generated tokens of each generating stage (what a budget
counts) and each train stage's tokens_seen.

    python bench/plan_accuracy.py configs/demo.yaml --run runs/demo
    python bench/plan_accuracy.py configs/demo.yaml --set segment.corpus=runs/bench-better-data/pages \\
        --set segment.max_segments=null --name web --run runs/plan-web
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from record import write_record

from humback.config import load_config
from humback.pipeline import run_pipeline
from humback.plan import plan

ROOT = Path(__file__).resolve().parent.parent


def actual_tokens(manifest: dict) -> dict[str, int]:
    """Each stage's tokens as the run spent them: the meter's counts in the manifest (replies the cache
    answered cost nothing), and each train stage's tokens_seen."""
    out: dict[str, int] = {}
    for key, st in manifest["stages"].items():
        spent = st.get("spent") or {}
        if key.startswith("train:"):
            out[f"{key} train"] = st["stats"]["tokens_seen"]
        elif key.split(":")[0] in ("augment", "curate", "rewrite"):
            out[f"{key} prompt"] = spent["prompt_tokens"]
            out[f"{key} generated"] = spent["generated_tokens"]
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
    want, got = planned_tokens(p), actual_tokens(manifest)
    table = {
        k: {
            "plan": want[k],
            "actual": got[k],
            "ratio": round(want[k] / got[k], 3) if got[k] else (1.0 if not want[k] else None),
        }
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
    selected = {  # what the plan expected the judge to keep, on what basis, and what it kept
        k: {"plan": st["selected"], "actual": ran[k]["stats"].get("selected"), "basis": st["selected_basis"]}
        for k, st in p["stages"].items()
        if "selected" in st and k in ran
    }
    for name, part in (("tokens", table), ("seconds", times)):
        print(f"[bench] {name}:")
        for k, v in part.items():
            print(f"  {k:<22} plan {v['plan']:>10} actual {v['actual']:>10} ratio {v['ratio']}")
    print(f"[bench] rows: {rows_}")
    print(f"[bench] selected: {selected}")
    token_ratios = [v["ratio"] for v in table.values() if v["ratio"] is not None]
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
        selected=selected,
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

"""The attacks on curation, before vs after, on AlpacaEval (evaluation only; nothing is fitted on it).

Rows: the first `--pairs` AlpacaEval instructions with their GPT-4 answers (good), and from each the bad
rows of every kind `humback calibrate` builds: mismatch, truncated, boilerplate, copy (instruction =
response, and "Repeat this text: <first half>"), meta, stacked, injected (judge-directed text appended or
inserted). One labelled file, scored twice by `humback calibrate` with the default curation
(configs/demo.yaml: IFD + end-of-turn log-probability, fitted weights, threshold 3.0):
- baseline: humback at `--baseline REV` (no gates, no removal of judge-directed text, no copy discount),
  run from a git worktree of that revision in a subprocess;
- candidate: this checkout.
For each: ROC-AUC of the selection score per kind (bad rows of that kind vs all good rows; skipped rows
rank last, as selection treats them) and the share of each kind at or above the threshold.

Also, the rubric judge read as `expected` (no reasoning) on the first `--judge-pairs` good rows and their
injected copies: the mean score of each and the share at >= 3 and >= 4, before vs after; and the share
of all 805 GPT-4 instructions a gate skips (false positives).

    # writes results/curation_attacks.json
    .venv/bin/python bench/curation_attacks.py --eval alpaca_eval.jsonl --pairs 100
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml
from record import write_record

from humback.calibrate import build_negatives, read_pairs, roc_auc
from humback.gates import gate

ROOT = Path(__file__).resolve().parents[1]


def calibrate(src: Path, data: Path, out: Path, curate: dict, cache_from: Path | None) -> list[dict]:
    """`humback calibrate` of the humback at `src` on labelled `data`; its scored rows."""
    config = out.with_suffix(".yaml")
    config.write_text(yaml.safe_dump({"curate": curate}))
    if cache_from is not None and cache_from.is_file():  # replies already computed are not asked again
        (out / "cache").mkdir(parents=True, exist_ok=True)
        shutil.copy(cache_from, out / "cache" / "responses.sqlite")
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "humback.cli",
            "calibrate",
            str(data),
            "-c",
            str(config),
            "--out-dir",
            str(out),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"calibrate with {src} failed:\n{proc.stderr[-3000:]}")
    print(proc.stdout, flush=True)
    return [json.loads(line) for line in (out / "scored.jsonl").read_text().splitlines()]


def kind_of(row_id: str) -> str:
    kind = row_id.rsplit(":", 1)[1]
    return "copy" if kind == "repeat" else kind


def per_kind(scored: list[dict], threshold: float) -> dict:
    kinds = sorted({kind_of(s["id"]) for s in scored})
    good = [s for s in scored if s["label"] == 1]
    out = {}
    for kind in kinds:
        rows = [s for s in scored if kind_of(s["id"]) == kind]
        entry = {
            "rows": len(rows),
            "selected_share": round(sum((s["score"] or 0) >= threshold for s in rows) / len(rows), 4),
        }
        if kind != "positive":
            both = good + rows
            entry["auc"] = roc_auc([s["label"] for s in both], [s["score"] for s in both])
            entry["skipped"] = dict(Counter(s.get("skipped") for s in rows if s.get("skipped")))
        out[kind] = entry
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval", required=True)
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--judge-pairs", type=int, default=50)
    ap.add_argument("--baseline", default="5d99ab2")
    ap.add_argument("--work", default="runs/bench-attacks")
    args = ap.parse_args()
    work = ROOT / args.work
    work.mkdir(parents=True, exist_ok=True)
    pairs = read_pairs(args.eval, "output_gpt4")
    everything = [gate(p["instruction"], p["response"]) for p in pairs]
    false_positives = Counter(g for g in everything if g)
    rows = build_negatives(pairs[: args.pairs], seed=0)
    data = work / "labelled.jsonl"
    data.write_text(
        "".join(
            json.dumps({k: r[k] for k in ("id", "instruction", "response", "label")}) + "\n" for r in rows
        )
    )
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["curate"]
    judge_rows = [r for r in rows[: 9 * args.judge_pairs] if r["id"].endswith((":positive", ":injected"))]
    judge_data = work / "judge.jsonl"
    judge_data.write_text(
        "".join(
            json.dumps({k: r[k] for k in ("id", "instruction", "response", "label")}) + "\n"
            for r in judge_rows
        )
    )
    rubric = {"method": "expected", "max_new_tokens": 0, "threshold": 3.0}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old), args.baseline],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            before = calibrate(old / "src", data, work / "before", demo, None)
            before_judge = calibrate(
                old / "src",
                judge_data,
                work / "before-judge",
                rubric,
                work / "before" / "cache" / "responses.sqlite",
            )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    after = calibrate(
        ROOT / "src", data, work / "after", demo, work / "before" / "cache" / "responses.sqlite"
    )
    after_judge = calibrate(
        ROOT / "src",
        judge_data,
        work / "after-judge",
        {**rubric, "judge_directed": "score"},
        work / "before-judge" / "cache" / "responses.sqlite",
    )
    results["default curation"] = {
        "before": per_kind(before, demo["threshold"]),
        "after": per_kind(after, demo["threshold"]),
    }

    def judge_summary(scored: list[dict]) -> dict:
        out = {}
        for kind in ("positive", "injected"):
            vals = [s.get("judge_score") for s in scored if kind_of(s["id"]) == kind]
            vals = [v for v in vals if v is not None]
            out[kind] = {
                "mean": round(sum(vals) / len(vals), 4) if vals else None,
                "share_ge_3": round(sum(v >= 3 for v in vals) / len(vals), 4) if vals else None,
                "share_ge_4": round(sum(v >= 4 for v in vals) / len(vals), 4) if vals else None,
            }
        return out

    results["rubric expected on injected answers"] = {
        "before": judge_summary(before_judge),
        "after (judge_directed: score)": judge_summary(after_judge),
    }
    results["gates on AlpacaEval GPT-4 instructions"] = {
        "rows": len(pairs),
        "skipped": dict(false_positives),
        "share": round(sum(false_positives.values()) / len(pairs), 4),
    }
    print(json.dumps(results, indent=1), flush=True)
    worst = {k: v for k, v in results["default curation"]["after"].items() if k != "positive"}
    base = min(v["auc"] for k, v in results["default curation"]["before"].items() if k != "positive")
    cand = min(v["auc"] for v in worst.values())
    write_record(
        ROOT / "bench" / "results" / "curation_attacks.json",
        "curation_attacks",
        "lowest per-kind ROC-AUC of the default curation over 7 kinds of bad rows (higher is better)",
        base,
        cand,
        round(cand / base, 3),
        pairs=args.pairs,
        judge_pairs=args.judge_pairs,
        baseline_revision=args.baseline,
        judge="default (CTranslate2 int8)",
        **results,
    )


if __name__ == "__main__":
    main()

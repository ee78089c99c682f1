"""Self-curation (paper §2.2, Table 1): a judge scores every candidate on the 5-point rubric; candidates
scoring at least the threshold are selected. How a candidate is scored (rubric methods, IFD, end-of-turn
log-probability, their combination) and selected is in scoring.py; this stage runs it over a candidates
file, kill-safe, and records the funnel.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from humback.config import CurateConfig
from humback.generation.base import Generator
from humback.prompts import CURATION_PROMPT
from humback.records import read_jsonl, write_jsonl
from humback.rundir import PASSED_OVER, SCORED, SELECTED
from humback.scoring import histogram, mean, parse_failure_rate, score_rows, select
from humback.stats import CurateStats

if TYPE_CHECKING:
    from humback.rowloop import Runner


def judged_rows(
    generator: Generator, rows: list[dict], cfg: CurateConfig, seed: int, iteration: int
) -> list[dict]:
    """Each candidate row scored by the judge (and forward signals), tagged with the iteration."""
    return [{**rec, "iteration": iteration} for rec in score_rows(generator, rows, cfg, seed)]


def read_candidates(candidates: str | Path) -> list[dict]:
    """curate's input, checked whole (ids, instruction and response strings) before any model loads."""
    return list(
        read_jsonl(
            candidates,
            required=("id", "instruction", "response"),
            unique_ids=True,
            strings=("instruction", "response"),
        )
    )


def curate(
    candidates: str | Path,
    runner: Runner,
    out: str | Path,
    cfg: CurateConfig,
    *,
    iteration: int = 1,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> CurateStats:
    """Every candidate scored by the judge `runner` runs (`out`/scored.jsonl), and the selection
    (`out`/selected.jsonl)."""
    out = Path(out)
    rows = read_candidates(candidates)
    # What a scored row depends on besides the judge: a rerun with another scoring method starts
    # scored.jsonl over (selection settings only choose among scored rows, so changing them costs no
    # generation).
    done = runner.map(
        rows,
        partial(judged_rows, cfg=cfg, seed=seed, iteration=iteration),
        out / SCORED,
        {"scoring": cfg.scoring_settings(), "prompt": CURATION_PROMPT, "seed": seed, "iteration": iteration},
        f"curate (iteration {iteration})",
        lambda r: len(r["instruction"]) + len(r["response"]),
        log=log,
    )
    scored = {r["id"]: r for r in done.rows}
    by_id = {r["id"]: r for r in rows}
    selection = select(rows, scored, cfg)
    selected = [by_id[i] for i in selection.ids]
    # Candidates above the threshold that selection passed over, each with why and whom it resembled.
    write_jsonl(out / PASSED_OVER, ({"id": i, **why} for i, why in selection.skipped.items()))
    write_jsonl(
        out / SELECTED,
        (
            {
                "id": c["id"],
                "instruction": c["instruction"],
                "response": c["response"],
                "score": scored[c["id"]]["score"],
                "tag": "augmented",
            }
            for c in selected
        ),
    )
    passed_over = dict(sorted(Counter(why["reason"] for why in selection.skipped.values()).items()))
    return curate_stats(rows, scored, selected, cfg) | {
        "resumed_rows": done.resumed,
        "passed_over": passed_over,
        **runner.stats(),
    }


def curate_stats(
    rows: list[dict], scored: dict[str, dict], selected: list[dict], cfg: CurateConfig
) -> CurateStats:
    """The stage's record: the funnel, parse failures, score histograms and the length-bias guard."""
    # Candidates skipped before judging (empty instruction, a gate, IFD cut) are counted apart, not as
    # failures.
    skipped = Counter(scored[r["id"]].get("skipped") for r in rows if scored[r["id"]].get("skipped"))
    judged = [scored[r["id"]] for r in rows if not scored[r["id"]].get("skipped")]
    judge_scores = [s.get("judge_score") for s in judged] if cfg.judged else []
    scores = [s["score"] for s in judged if s["score"] is not None]

    # Length-bias guard: judges (LLM and human) favour longer answers; a selection much longer than its
    # pool says the score is partly a length score.
    def mean_len(items: list[dict], key: str) -> float:
        return round(sum(len(c[key]) for c in items) / len(items), 1) if items else 0.0

    stats: CurateStats = {
        "rows": len(rows),
        "selected": len(selected),
        "threshold": cfg.threshold,
        "method": cfg.method,
        "skipped_empty_instruction": skipped.get("empty_instruction", 0),
        "skipped_ifd": skipped.get("ifd", 0),
        "skipped": dict(sorted(skipped.items())),
        "judge_directed": sum(bool(scored[r["id"]].get("judge_directed")) for r in rows),
        "parse_failures": sum(v is None for v in judge_scores),
        "parse_failure_rate": parse_failure_rate(judged) if cfg.judged else 0.0,
        "mean_score": mean(scores),
        "score_histogram": histogram([s["score"] for s in judged]),
        "response_chars_pool": mean_len(rows, "response"),
        "response_chars_selected": mean_len(selected, "response"),
        "instruction_chars_pool": mean_len(rows, "instruction"),
        "instruction_chars_selected": mean_len(selected, "instruction"),
    }
    if cfg.judged:
        stats["histogram"] = histogram(judge_scores)
        stats["mean_judge_score"] = mean([v for v in judge_scores if v is not None])
    if cfg.judged and cfg.method == "mean-of-k":
        samples = [p for s in judged for p in s["samples"]]
        stats["sample_parse_failure_rate"] = (
            round(sum(p is None for p in samples) / len(samples), 4) if samples else 0.0
        )
    if cfg.forward_signals:
        stats["mean_ifd"] = mean([s["ifd"] for s in scored.values() if s.get("ifd") is not None])
    return stats

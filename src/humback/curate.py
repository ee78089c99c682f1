"""Self-curation (paper §2.2, Table 1): a judge scores every candidate on the 5-point rubric; candidates
scoring at least the threshold are selected.

Judge output is untrusted input. `parse_score` takes the *last* `Score: N` (the rubric asks for it on the
last line; reasoning may quote other numbers), accepts only 1-5, and returns None otherwise; failures
are counted, never coerced. The earlier re-implementation took the first match and let 91 through.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from humback.augment import row_seed
from humback.config import CurateConfig
from humback.generation.base import Generator, SamplingParams
from humback.generation.cache import generator_stats
from humback.prompts import CURATION_PROMPT, SCORE_PREFIX
from humback.records import RowWriter, read_jsonl, write_jsonl

# "Score: 4", "score: 4.", "**Score:** 4", "Score = 5/5", "Score: **3**"
SCORE_RE = re.compile(r"score\s*\**\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)(?![\d.]*\d)", re.IGNORECASE)
CHOICES = ["1", "2", "3", "4", "5"]


def parse_score(text: str | None) -> int | None:
    """The last 'Score: N' in a judge reply as an int in 1..5, else None."""
    if not text:
        return None
    matches = SCORE_RE.findall(text)
    if not matches:
        return None
    value = float(matches[-1])
    return int(value) if value.is_integer() and 1 <= value <= 5 else None


def judge_messages(instruction: str, response: str) -> list[dict]:
    return [{"role": "user", "content": CURATION_PROMPT.format(instruction=instruction, response=response)}]


def _reasoning_before_score(text: str) -> str:
    """The judge's reasoning, cut before any score it wrote itself (the 'expected' method reads the
    score from the distribution instead)."""
    cut = re.search(r"\**\s*score\s*\**\s*[:=]", text, re.IGNORECASE)
    return (text[:cut.start()] if cut else text).rstrip()


def expected_score(dist: dict[str, float]) -> float | None:
    """E[score] under a distribution over '1'..'5' (keys may carry spaces); None when it is empty (a
    server that returned none of the digits among its top tokens)."""
    return round(sum(int(c.strip()) * p for c, p in dist.items()), 4) if dist else None


def score_chunk(generator: Generator, chunk: list[dict], cfg: CurateConfig, seed: int) -> list[dict]:
    prompts = [judge_messages(r["instruction"], r["response"]) for r in chunk]
    params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens, seed)
    seeds = [row_seed(seed, r["id"]) for r in chunk]
    replies = generator.generate(prompts, params, seeds) if cfg.max_new_tokens else [""] * len(chunk)
    if cfg.method == "sample":
        scores = [parse_score(t) for t in replies]
        reasoning = replies
    else:  # expected: E[score] under the judge's next-token distribution after its own reasoning
        reasoning = [_reasoning_before_score(t) for t in replies]
        conts = [(r + "\n" if r else "") + SCORE_PREFIX for r in reasoning]
        dists = generator.next_token_probs(prompts, conts, [" " + c for c in CHOICES])
        scores = [expected_score(d) for d in dists]
    return [
        {"id": r["id"], "score": s, "reasoning": text, "judge": {"model": generator.model, "method": cfg.method}}
        for r, s, text in zip(chunk, scores, reasoning)
    ]


def histogram(scores: list[float | None]) -> dict[str, int]:
    """Counts per score bucket 1..5 (continuous scores rounded half up) plus 'unparsed'."""
    counts = Counter("unparsed" if s is None else str(min(5, max(1, int(s + 0.5)))) for s in scores)
    return {k: counts.get(k, 0) for k in CHOICES + ["unparsed"]}


def select(candidates: list[dict], scored: dict[str, dict], threshold: float, max_selected: int | None = None,
           top_fraction: float | None = None) -> list[dict]:
    """Candidates scoring >= threshold, best first (ties in candidate order), capped at max_selected
    and at top_fraction of all candidates (rounded down, at least one)."""
    keep = [c for c in candidates if scored[c["id"]]["score"] is not None and scored[c["id"]]["score"] >= threshold]
    keep.sort(key=lambda c: -scored[c["id"]]["score"])
    caps = [len(keep)]
    if max_selected:
        caps.append(max_selected)
    if top_fraction:
        caps.append(max(1, int(top_fraction * len(candidates))))
    return keep[:min(caps)]


def curate(candidates: str | Path, generator: Generator, out_dir: str | Path, cfg: CurateConfig,
           iteration: int = 1, seed: int = 0, chunk_size: int | None = None) -> dict:
    out_dir = Path(out_dir)
    rows = list(read_jsonl(candidates, required=("id", "instruction", "response")))
    writer = RowWriter(out_dir / "scored.jsonl")
    # Shortest first, for batches of similar length; scored.jsonl is put back in candidate order.
    todo = sorted((r for r in rows if r["id"] not in writer.done),
                  key=lambda r: len(r["instruction"]) + len(r["response"]))
    resumed = len(rows) - len(todo)
    chunk_size = chunk_size or generator.chunk_size
    try:
        with tqdm(total=len(rows), initial=resumed, desc=f"curate (iteration {iteration})", unit="cand") as bar:
            for start in range(0, len(todo), chunk_size):
                chunk = todo[start:start + chunk_size]
                judged = [r for r in chunk if r["instruction"]]
                results = score_chunk(generator, judged, cfg, seed) if judged else []
                results += [{"id": r["id"], "score": None, "reasoning": "", "judge": {"model": generator.model,
                             "method": cfg.method}, "skipped": "empty_instruction"} for r in chunk if not r["instruction"]]
                writer.write({**res, "iteration": iteration} for res in results)
                bar.update(len(chunk))
        writer.finish(order=[r["id"] for r in rows])
    finally:
        writer.close()
    scored = {r["id"]: r for r in read_jsonl(out_dir / "scored.jsonl")}
    selected = select(rows, scored, cfg.threshold, cfg.max_selected, cfg.top_fraction)
    write_jsonl(out_dir / "selected.jsonl", (
        {"id": c["id"], "instruction": c["instruction"], "response": c["response"],
         "score": scored[c["id"]]["score"], "tag": "augmented"} for c in selected))
    # Candidates with an empty instruction are not judged: they are counted apart, not as parse failures.
    scores = [scored[r["id"]]["score"] for r in rows if not scored[r["id"]].get("skipped")]
    judged, skipped = len(scores), len(rows) - len(scores)
    failures = sum(s is None for s in scores)

    def mean_len(items):
        return round(sum(len(c["response"]) for c in items) / len(items), 1) if items else 0.0

    return {
        "rows": len(rows), "resumed_rows": resumed, "selected": len(selected), "threshold": cfg.threshold,
        "method": cfg.method, "histogram": histogram(scores),
        "skipped_empty_instruction": skipped, "parse_failures": failures,
        "parse_failure_rate": round(failures / judged, 4) if judged else 0.0,
        "mean_score": round(sum(s for s in scores if s is not None) / max(1, judged - failures), 3),
        "response_chars_pool": mean_len(rows), "response_chars_selected": mean_len(selected),
        **generator_stats(generator),
    }

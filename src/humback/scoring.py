"""How candidates are scored: the rubric judge (paper Table 1) read four ways, forward-pass signals, their
combination, and selection. Shared by the curate stage (every candidate), `humback calibrate` (labelled or
built negatives) and `humback eval` (each iteration's judge).

Judge output is untrusted input. `parse_score` takes the *last* `Score: N` (the rubric asks for it on the
last line; reasoning may quote other numbers), accepts only 1-5, and returns None otherwise; failures
are counted, never coerced. The earlier re-implementation took the first match and let 91 through.

Beyond the paper's one sampled reply (`sample`), the rubric can be read greedily (`greedy`), averaged
over k samples (`mean-of-k`), or as the expected score under the judge's next-token distribution after
"Score:" (`expected`: continuous, never unparseable). Two forward-pass signals come from the same model:
IFD (Li et al. 2024, "From Quantity to Quality", arXiv 2308.12032: loss(y | x) / loss(y); >= 1 means
the instruction does not help predict the response) and the log-probability that the reply ends where
it does (a cut-off reply ends where the model would not). `combine` folds the signals into one score on
the rubric's 1-5 scale, with weights `humback calibrate --fit` fits on labelled or built negatives.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import NamedTuple

from humback.config import CurateConfig
from humback.gates import LONG_RESPONSE, gate, overlap, words
from humback.generation.base import Generator, SamplingParams, row_seed
from humback.prompts import CURATION_PROMPT, SCORE_PREFIX
from humback.untrusted import judge_view

# "Score: 4", "score: 4.", "**Score:** 4", "Score = 5/5", "Score: **3**"
SCORE_RE = re.compile(r"score\s*\**\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)(?![\d.]*\d)", re.IGNORECASE)
CHOICES = ["1", "2", "3", "4", "5"]
# IFD's unconditional loss: the response as the reply to an empty user turn, so the chat format's own
# tokens weigh the same on both sides and the ratio measures only what the instruction explains.
NO_INSTRUCTION = [{"role": "user", "content": ""}]


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
    return (text[: cut.start()] if cut else text).rstrip()


def expected_score(dist: dict[str, float]) -> float | None:
    """E[score] under a distribution over '1'..'5' (keys may carry spaces); None when it is empty (a
    server that returned none of the digits among its top tokens)."""
    return round(sum(int(c.strip()) * p for c, p in dist.items()), 4) if dist else None


def _mean_nll(logprobs: list[float]) -> float:
    return -sum(logprobs) / len(logprobs) if logprobs else 0.0


def forward_signals(generator: Generator, rows: list[dict]) -> list[dict]:
    """IFD and the end-of-turn log-probability of each row's response, from two forward passes."""
    replies = [r["response"] for r in rows]
    cond = generator.reply_logprobs([[{"role": "user", "content": r["instruction"]}] for r in rows], replies)
    bare = generator.reply_logprobs([NO_INSTRUCTION] * len(rows), replies)
    out = []
    for c, b in zip(cond, bare):
        given, alone = _mean_nll(c["tokens"]), _mean_nll(b["tokens"])
        out.append(
            {
                "ifd": round(given / alone, 4) if alone > 0 else None,
                "nll": round(given, 4),
                "end_logprob": round(c["end"], 4),
            }
        )
    return out


def judge(generator: Generator, rows: list[dict], cfg: CurateConfig, seed: int) -> list[dict]:
    """The rubric judge's score and reasoning for each row, by cfg.method."""
    prompts = [judge_messages(r["instruction"], r["response"]) for r in rows]
    seeds = [row_seed(seed, r["id"]) for r in rows]
    if cfg.method == "greedy":
        replies = generator.generate(prompts, SamplingParams(0.0, 1.0, cfg.max_new_tokens, seed), seeds)
        return [{"judge_score": parse_score(t), "reasoning": t} for t in replies]
    params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens, seed)
    if cfg.method == "sample":
        replies = generator.generate(prompts, params, seeds)
        return [{"judge_score": parse_score(t), "reasoning": t} for t in replies]
    if cfg.method == "mean-of-k":
        # k samples per row, each with its own seed (the first is the 'sample' method's, so the cache
        # shares it); unparseable ones are left out of the mean.
        samples = [
            generator.generate(
                prompts, params, seeds if j == 0 else [row_seed(seed, f"{r['id']}:{j}") for r in rows]
            )
            for j in range(cfg.k)
        ]
        out = []
        for i in range(len(rows)):
            parsed = [parse_score(s[i]) for s in samples]
            valid = [p for p in parsed if p is not None]
            out.append(
                {
                    "judge_score": round(sum(valid) / len(valid), 4) if valid else None,
                    "samples": parsed,
                    "reasoning": samples[0][i],
                }
            )
        return out
    # expected: E[score] under the judge's next-token distribution after its own reasoning
    replies = generator.generate(prompts, params, seeds) if cfg.max_new_tokens else [""] * len(rows)
    reasoning = [_reasoning_before_score(t) for t in replies]
    conts = [(r + "\n" if r else "") + SCORE_PREFIX for r in reasoning]
    dists = generator.next_token_probs(prompts, conts, [" " + c for c in CHOICES])
    return [{"judge_score": expected_score(d), "reasoning": text} for d, text in zip(dists, reasoning)]


def combined_score(row: dict, weights: dict[str, float]) -> float | None:
    """1 + 4 * sigmoid(bias + sum of weight x signal): P(good) under the fitted logistic model, on the
    rubric's 1-5 scale so thresholds read the same way (4 = P(good) 0.75). None when a weighted signal
    is missing (an unparsed judge reply) or not a number (NaN)."""
    z = weights.get("bias", 0.0)
    for name, w in weights.items():
        if name == "bias" or w == 0:
            continue
        if row.get(name) is None:
            return None
        z += w * row[name]
    if math.isnan(z):  # a NaN signal would pass min(50, nan) as 50: a 5.0 for nothing
        return None
    return round(1 + 4 / (1 + math.exp(-max(-50.0, min(50.0, z)))), 4)


FREE_OVERLAP = 0.2  # the share of a response an instruction may reproduce before its score is discounted


def copy_discount(score: float | None, overlap: float, response: str) -> float | None:
    """`score` (1-5) discounted as the instruction reproduces more of its response: unchanged up to
    FREE_OVERLAP, falling linearly to the minimum, 1, for a copy. IFD and the end-of-turn log-probability
    reward a copy most of all (nothing predicts a response better than the response), so without this a
    copy outscores every real pair; with it the score cannot rise as overlap rises past the free share
    (docs/method.md §11). Short responses (a one-line answer may quote its instruction) are left alone."""
    if score is None or overlap <= FREE_OVERLAP or len(words(response)) < LONG_RESPONSE:
        return score
    return round(1 + (score - 1) * (1 - overlap) / (1 - FREE_OVERLAP), 4)


def score_rows(generator: Generator, rows: list[dict], cfg: CurateConfig, seed: int) -> list[dict]:
    """One scored record per row, in row order: the signals cfg asks for and `score`, the value
    selection ranks by. Rows with an empty instruction, failing a gate (humback/gates.py), holding
    judge-directed text with cfg.judge_directed 'skip', or with IFD >= cfg.max_ifd, are not judged
    (`skipped` says why). Judges and forward passes read each pair neutralised (humback/untrusted.py)."""
    out = [{"id": r["id"], "score": None} for r in rows]
    live = [i for i, r in enumerate(rows) if r["instruction"].strip()]
    for i in set(range(len(rows))) - set(live):
        out[i]["skipped"] = "empty_instruction"
    views = {}
    for i in live:
        out[i]["overlap"] = overlap(rows[i]["instruction"], rows[i]["response"])
        reason = gate(rows[i]["instruction"], rows[i]["response"], tuple(cfg.gates))
        views[i], directed = judge_view(rows[i])
        if directed:
            out[i]["judge_directed"] = True
        if reason is None and directed and cfg.judge_directed == "skip":
            reason = "judge_directed"
        if reason is not None:
            out[i]["skipped"] = reason
    live = [i for i in live if not out[i].get("skipped")]
    rows = [views.get(i, r) for i, r in enumerate(rows)]  # from here on, what the judge reads
    if cfg.forward_signals and live:
        for i, sig in zip(live, forward_signals(generator, [rows[i] for i in live])):
            out[i].update(sig)
        if cfg.max_ifd is not None:
            for i in live:
                if out[i]["ifd"] is not None and out[i]["ifd"] >= cfg.max_ifd:
                    out[i]["skipped"] = "ifd"
            live = [i for i in live if not out[i].get("skipped")]
    if cfg.judged and live:
        for i, res in zip(live, judge(generator, [rows[i] for i in live], cfg, seed)):
            out[i].update(res)
    for i in live:
        score = combined_score(out[i], cfg.combine) if cfg.combine else out[i].get("judge_score")
        out[i]["score"] = copy_discount(score, out[i]["overlap"], rows[i]["response"])
    for rec in out:
        rec["judge"] = {"model": generator.model, "method": cfg.method}
    return out


def histogram(scores: list[float | None]) -> dict[str, int]:
    """Counts per score bucket 1..5 (continuous scores rounded half up) plus 'unparsed'."""
    counts = Counter("unparsed" if s is None else str(min(5, max(1, int(s + 0.5)))) for s in scores)
    return {k: counts.get(k, 0) for k in CHOICES + ["unparsed"]}


class Selection(NamedTuple):
    ids: list[str]  # the selected candidates, best first
    skipped: dict[str, dict]  # candidates above the threshold that were passed over: id -> {reason, like}


def select(candidates: list[dict], scored: dict[str, dict], cfg: CurateConfig) -> Selection:
    """The candidates scoring >= cfg.threshold, best first (ties in candidate order), capped at
    cfg.max_selected and at cfg.top_fraction of all candidates (rounded down, at least one), skipping one
    whose instruction near-duplicates one already selected (`near_duplicate_instruction`) or, with
    cfg.diversity, whose embedding is that close (cosine) to one already selected (`diversity`): each skip
    with its reason and the selected candidate it resembled."""
    from humback.data.dedup import Deduplicator

    keep = [
        c
        for c in candidates
        if scored[c["id"]]["score"] is not None and scored[c["id"]]["score"] >= cfg.threshold
    ]
    keep.sort(key=lambda c: -scored[c["id"]]["score"])
    caps = [len(keep)]
    if cfg.max_selected:
        caps.append(cfg.max_selected)
    if cfg.top_fraction:
        caps.append(max(1, int(cfg.top_fraction * len(candidates))))
    # Instructions are short: character 5-grams, not the word 5-grams used for segments.
    dedup = (
        Deduplicator(cfg.near_duplicate_instructions, char_ngrams=5)
        if cfg.near_duplicate_instructions
        else None
    )
    vectors = None
    if cfg.diversity is not None:
        from humback.embeddings import embed

        both = cfg.diversity_text == "instruction+response"
        vectors = embed(
            [c["instruction"] + ("\n\n" + c["response"] if both else "") for c in keep], cfg.diversity_model
        )
    chosen: list[str] = []
    rows: list[int] = []  # positions in `keep` of the chosen, for their embeddings
    skipped: dict[str, dict] = {}
    for k, c in enumerate(keep):
        if len(chosen) == min(caps):
            break
        if dedup is not None and dedup.check_and_add(c["instruction"]) is not None:
            skipped[c["id"]] = {"reason": "near_duplicate_instruction"}
            continue
        if vectors is not None and rows:
            similarity = vectors[rows] @ vectors[k]
            nearest = int(similarity.argmax())
            if similarity[nearest] >= cfg.diversity:
                skipped[c["id"]] = {
                    "reason": "diversity",
                    "like": chosen[nearest],
                    "similarity": round(float(similarity[nearest]), 4),
                }
                continue
        chosen.append(c["id"])
        rows.append(k)
    return Selection(chosen, skipped)


def select_ids(candidates: list[dict], scored: dict[str, dict], cfg: CurateConfig) -> list[str]:
    """The ids `select` keeps."""
    return select(candidates, scored, cfg).ids


def mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def parse_failure_rate(records: list[dict]) -> float:
    """The share of judged (not skipped) scored records whose judge reply gave no score."""
    judged = [r for r in records if not r.get("skipped")]
    return round(sum(r.get("judge_score") is None for r in judged) / len(judged), 4) if judged else 0.0

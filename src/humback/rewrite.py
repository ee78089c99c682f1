"""The rewrite stage (Nguyen et al. 2024, "Better Alignment with Instruction Back-and-Forth Translation",
arXiv 2408.04614; docs/method.md §12): after curation, an aligned model rewrites each selected web
response for its generated instruction, keeping the document's facts and copying its text where possible.

The paper filters first, then rewrites, with a strong rewriter (a weak one, 7B-chat or the seed-tuned
forward model, did worse). humback adds what the paper leaves to trust: the reply is read only between its
markers, and a rewrite must keep the original's content (ROUGE-L recall), stay within length bounds and add
no number or name the instruction and the original do not hold; a rewrite that fails keeps the original,
each outcome counted. Every row keeps both texts: `response` (what training uses) and `original_response`.

Every reply goes through the row loop (kill-safe, local or Ray) and the response cache, so a rerun, or a
second iteration that selects the same pair, asks the rewriter nothing twice.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from humback.config import ConfigError, EngineConfig, RewriteConfig
from humback.generation.base import Generator, SamplingParams, row_seed
from humback.prompts import REWRITE_END, REWRITE_PROMPT, REWRITE_START
from humback.records import read_jsonl, write_jsonl
from humback.rundir import REWRITES, REWRITTEN
from humback.stats import RewriteStats
from humback.templates import rewrite_messages

if TYPE_CHECKING:
    from humback.rowloop import Runner

NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A capitalised word that does not start a sentence or a line: a name, most often.
NAME = re.compile(r"(?<![.!?:\n]\s)(?<!^)(?<=\s)([A-Z][a-z]+(?:[A-Z][a-z]+)*)\b")


def parse_rewrite(reply: str, begun: bool = False) -> str | None:
    """The text between the reply's last start marker and the end marker after it, or None: no start
    marker, no end marker (a reply cut off by max_new_tokens), or nothing between them. `begun`: the reply
    was begun with the start marker (cfg.begin_reply), so `reply` is what followed it."""
    if begun:
        reply = REWRITE_START + reply
    start = reply.rfind(REWRITE_START)
    if start < 0:
        return None
    end = reply.find(REWRITE_END, start + len(REWRITE_START))
    if end < 0:
        return None
    text = reply[start + len(REWRITE_START) : end].strip()
    return text or None


def overlap_recall(rewrite: str, original: str) -> float:
    """ROUGE-L recall of the original by the rewrite: the share of the original's words that the rewrite
    keeps in order (stemmed), from the rouge-score library."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return round(scorer.score(original, rewrite)["rougeL"].recall, 4)


def novel(rewrite: str, sources: str) -> list[str]:
    """Numbers and names in the rewrite that the sources (the instruction and the original) do not hold."""
    known_numbers = {n.replace(",", "") for n in NUMBER.findall(sources)}
    known_words = {w.lower() for w in re.findall(r"[A-Za-z]+", sources)}
    found = [n for n in NUMBER.findall(rewrite) if n.replace(",", "") not in known_numbers]
    found += [n for n in NAME.findall(rewrite) if n.lower() not in known_words]
    return list(dict.fromkeys(found))


def judge_rewrite(rewrite: str | None, row: dict, cfg: RewriteConfig) -> tuple[str, dict]:
    """The outcome for one selected row: 'rewritten', 'unparsed', 'unchanged' (the rewrite is the original
    word for word: counted apart, so a copying rewriter does not pass as a good one), or 'failed_<check>'
    (the first check failed), with the measures taken."""
    if rewrite is None:
        return "unparsed", {}
    original = row["response"]
    if rewrite.split() == original.split():
        return "unchanged", {"overlap": 1.0, "length_ratio": round(len(rewrite) / max(1, len(original)), 4)}
    measures = {
        "overlap": overlap_recall(rewrite, original),
        "length_ratio": round(len(rewrite) / max(1, len(original)), 4),
        "novel": novel(rewrite, row["instruction"] + "\n" + original),
    }
    failed = {
        "overlap": measures["overlap"] < cfg.min_overlap,
        "length": not cfg.min_length_ratio <= measures["length_ratio"] <= cfg.max_length_ratio,
        "novel": bool(measures["novel"]),
    }
    for check in cfg.checks:
        if failed[check]:
            return f"failed_{check}", measures
    return "rewritten", measures


def rewritten_rows(generator: Generator, rows: list[dict], cfg: RewriteConfig, seed: int) -> list[dict]:
    """Each selected row with its rewrite (or its original, when the rewrite did not hold)."""
    params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens, seed)
    seeds = [row_seed(seed, r["id"]) for r in rows]
    begin = REWRITE_START if cfg.begin_reply else ""
    replies = generator.generate(
        [rewrite_messages(r["instruction"], r["response"], begin) for r in rows], params, seeds
    )
    out = []
    for row, reply in zip(rows, replies):
        rewrite = parse_rewrite(reply, begun=cfg.begin_reply)
        status, measures = judge_rewrite(rewrite, row, cfg)
        out.append(
            {
                **row,
                "response": rewrite if status == "rewritten" else row["response"],
                "original_response": row["response"],
                "rewrite": {
                    "status": status,
                    "model": generator.model,
                    **measures,
                    # what the viewer shows beside the original when the rewrite was not used
                    **({"reply": reply} if rewrite is None else {}),
                    **({"text": rewrite} if rewrite is not None and status != "rewritten" else {}),
                },
            }
        )
    return out


def check_rewriter(engine: EngineConfig, model: str) -> None:
    """A rewriter must be an instruction-tuned model: a local or hub model without a chat template is a
    config error (a server's model is the server's to template)."""
    if engine.backend == "openai":
        return
    from humback.models import load_tokenizer

    if not load_tokenizer(engine.model or model).chat_template:
        raise ConfigError(
            f"generation.rewriter: the model {engine.model or model!r} has no chat template, so it cannot be"
            " asked to rewrite: name an instruction-tuned model in generation.rewriter.model (Back-and-Forth"
            " used Llama-2-70B-chat), or set rewrite.enabled: false"
        )


def read_selected(selected: str | Path) -> list[dict]:
    """rewrite's input, checked whole before any model loads."""
    text = ("instruction", "response")
    return list(read_jsonl(selected, required=("id", *text), unique_ids=True, strings=text))


def rewrite(
    selected: str | Path,
    runner: Runner,
    out: str | Path,
    cfg: RewriteConfig,
    *,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> RewriteStats:
    """Every row of `selected` rewritten by the model `runner` runs: each attempt in `out`/rewrites.jsonl,
    the rows training uses in `out`/rewritten.jsonl (a row that does not parse is dropped there when
    cfg.on_parse_failure is 'drop')."""
    out = Path(out)
    rows = read_selected(selected)
    # What a row depends on besides the rewriter: the prompt, the sampling and the checks (a rerun with
    # other checks starts the rows over, and the response cache answers every reply again).
    settings = {
        "prompt": REWRITE_PROMPT,
        "params": [cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.begin_reply],
        "seed": seed,
        "checks": [cfg.checks, cfg.min_overlap, cfg.min_length_ratio, cfg.max_length_ratio],
    }
    done = runner.map(
        rows,
        partial(rewritten_rows, cfg=cfg, seed=seed),
        out / REWRITES,
        settings,
        "rewrite",
        lambda r: len(r["response"]),
        log=log,
    )
    keep = [
        r for r in done.rows if not (cfg.on_parse_failure == "drop" and r["rewrite"]["status"] == "unparsed")
    ]
    write_jsonl(out / REWRITTEN, keep)
    outcome = Counter(r["rewrite"]["status"] for r in done.rows)
    parsed = [r for r in done.rows if r["rewrite"]["status"] != "unparsed"]
    ratios = [r["rewrite"]["length_ratio"] for r in parsed]
    return {
        "rows": len(keep),
        "model": done.rows[0]["rewrite"]["model"] if done.rows else None,
        "selected": len(rows),
        "rewritten": outcome["rewritten"],
        "kept_original": len(keep) - outcome["rewritten"],
        "dropped": len(rows) - len(keep),
        "outcome": dict(sorted(outcome.items())),
        "parse_rate": round(len(parsed) / len(rows), 4) if rows else 0.0,
        "pass_rate": round(outcome["rewritten"] / len(parsed), 4) if parsed else 0.0,
        "mean_length_ratio": round(sum(ratios) / len(ratios), 4) if ratios else None,
        "resumed_rows": done.resumed,
        **runner.stats(),
    }

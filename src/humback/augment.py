"""Self-augmentation (paper §2.2): the backward model M_yx writes one instruction for every segment.

Instructions are generated once; M_yx is not retrained. Rows are appended as produced, so a killed run
resumes where it stopped and the final file has exactly one row per segment, in segment order.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from humback.config import AugmentConfig
from humback.generation.base import Generator, SamplingParams, row_seed
from humback.prompts import BACKWARD_PROMPT
from humback.records import read_jsonl
from humback.stats import AugmentStats
from humback.templates import backward_messages

if TYPE_CHECKING:
    from humback.rowloop import Runner


def clean_instruction(text: str) -> str:
    """Model output is untrusted: strip a leading label the model may echo, and surrounding quotes."""
    text = text.strip()
    for label in ("Question:", "Instruction:", "Q:"):
        if text.startswith(label):
            text = text[len(label) :].strip()
    return text.strip('"').strip()


def instructions(generator: Generator, rows: list[dict], params: SamplingParams, seed: int) -> list[dict]:
    """One candidate per segment row: the backward model's instruction for it (seeded by the row's id)."""
    seeds = [row_seed(seed, r["id"]) for r in rows]
    texts = generator.generate([backward_messages(r["text"]) for r in rows], params, seeds)
    return [
        {
            "id": r["id"],
            "instruction": clean_instruction(text),
            "response": r["text"],
            "segment_id": r["id"],
            "generator": {"model": generator.model, "params": {**params.as_dict(), "seed": s}},
        }
        for r, text, s in zip(rows, texts, seeds)
    ]


def read_segments(segments: str | Path) -> list[dict]:
    """augment's input, checked whole (ids, texts) before any model loads."""
    return list(read_jsonl(segments, required=("id", "text"), unique_ids=True, strings=("text",)))


def augment(
    segments: str | Path,
    runner: Runner,
    out: str | Path,
    cfg: AugmentConfig,
    *,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> AugmentStats:
    """One candidate per row of `segments`, written to `out` by the backward model `runner` runs."""
    rows = read_segments(segments)
    params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens, seed)
    # What a row depends on besides the model: a rerun with other sampling starts the partial file over.
    done = runner.map(
        rows,
        partial(instructions, params=params, seed=seed),
        Path(out),
        {"params": params.as_dict(), "prompt": BACKWARD_PROMPT},
        "augment",
        lambda r: len(r["text"]),
        log=log,
    )
    empty = sum(not r["instruction"] for r in done.rows)
    return {"rows": len(rows), "resumed_rows": done.resumed, "empty_instructions": empty, **runner.stats()}

"""Pairs -> tokenised training examples with the loss on target tokens only.

Prompt and target are rendered by `humback.templates` (the same functions inference uses) and tokenised
separately, so the label mask is exact by construction: every prompt token is -100, every target token
(end-of-turn marker included) is trained. No tokenizer-specific offsets (docs/method.md §9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from humback.errors import HumbackError
from humback.templates import backward_messages, forward_messages, render_prompt, render_target

Direction = Literal["forward", "backward"]


class TrainingDataError(HumbackError):
    """Training data that cannot train anything; the message says why and what to change."""


@dataclass
class Encoded:
    examples: list[dict] = field(default_factory=list)
    dropped_too_long: int = 0
    target_tokens: int = 0


def pair_messages(pair: dict, direction: Direction, tags: bool) -> tuple[list[dict], str]:
    if direction == "backward":
        return backward_messages(pair["response"]), pair["instruction"]
    tag = (pair.get("tag") or "seed") if tags else None
    return forward_messages(pair["instruction"], tag), pair["response"]


def encode(tokenizer, pairs: list[dict], direction: Direction, tags: bool, max_length: int) -> Encoded:
    """Tokenise pairs; examples longer than `max_length` are dropped (never cut: a cut target would
    train the model to stop mid-answer) and counted."""
    out = Encoded()
    for pair in pairs:
        messages, target = pair_messages(pair, direction, tags)
        prompt_ids = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
        target_ids = tokenizer(render_target(tokenizer, messages, target), add_special_tokens=False)[
            "input_ids"
        ]
        if len(prompt_ids) + len(target_ids) > max_length:
            out.dropped_too_long += 1
            continue
        out.examples.append(
            {
                "input_ids": prompt_ids + target_ids,
                "labels": [-100] * len(prompt_ids) + target_ids,
            }
        )
        out.target_tokens += len(target_ids)
    if not pairs:
        raise TrainingDataError("no training pairs given: the dataset is empty")
    if not out.examples:
        raise TrainingDataError(
            f"all {len(pairs)} {direction} examples are longer than train.max_length={max_length} tokens:"
            " raise train.max_length"
        )
    if out.target_tokens == 0:
        raise TrainingDataError("the examples have no target tokens: nothing to train on")
    return out

"""The one small protocol every generation backend implements (generation/__init__.py picks a backend with
a plain `if`), and the helpers the backends share.

A request is a chat (list of messages) plus sampling parameters and a per-request seed. Backends that
seed each request on its own (vLLM, OpenAI-compatible servers) give the same text for the same request
whatever else is in the batch; transformers and CTranslate2 seed once per batch, with the seed of the
batch's first request, so their samples also depend on how requests were grouped.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Protocol

from humback.errors import EnvironmentFault
from humback.models import ModelError, resolve_model
from humback.templates import render_prompt, render_target


class GenerationError(EnvironmentFault):
    """A backend could not produce replies (server down, bad endpoint). `done` maps request index to
    reply for the requests that did finish, so callers can keep them."""

    def __init__(self, message: str, done: dict[int, str] | None = None, status: int | None = None):
        super().__init__(message)
        self.done = done or {}
        self.status = status  # the HTTP status of a server's answer, when there was one


class UnsupportedRequest(ModelError):
    """The engine cannot answer this kind of request (an endpoint without log-probabilities, a chat API
    asked to score given text): a setting to change, not a fault to wait out (exit 2)."""


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 0.9
    max_new_tokens: int = 128
    seed: int = 0  # used for every request unless per-request seeds are given

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def effective(self) -> tuple[float, float]:
        """(temperature, top_p) as sent to an engine: greedy is temperature 0 with no nucleus cut."""
        return (0.0, 1.0) if self.greedy else (self.temperature, self.top_p)


# How many alternatives per position engines report: OpenAI's API ceiling and vLLM's default max_logprobs.
# A choice outside them gets probability 0.
TOP_LOGPROBS = 20


class Generator(Protocol):
    model: str
    backend: str  # the name in config.BACKENDS, as the stage records it
    # What identifies the outputs: backend, weights' content (or served model), numeric precision.
    # The response cache keys on it, so a retrained model at the same path never hits old replies.
    fingerprint: str
    # How many requests a stage should hand over per call: rows are saved after each call.
    chunk_size: int

    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[str]:
        """One completion per chat, in input order. `seeds[i]` seeds request i (default params.seed)."""
        ...

    def next_token_probs(
        self, prompts: list[list[dict]], continuations: list[str], choices: list[str]
    ) -> list[dict[str, float]]:
        """For each chat, with the assistant's reply begun by `continuations[i]`, the probability of each
        of `choices` as the next token, renormalised over the choices; {} when no choice has any (none
        among an engine's top log-probabilities). Every backend agrees on this: callers count {} as an
        unreadable answer."""
        ...

    def reply_logprobs(self, prompts: list[list[dict]], replies: list[str]) -> list[dict]:
        """For each chat answered by `replies[i]`: {"tokens": log-probability of each reply token given
        everything before it, "end": log-probability of the turn's end marker right after the reply}.
        Forward passes only: the reply's likelihood (IFD, reference-answer NLL) and whether the model
        would stop there (a cut-off reply ends where the model would not)."""
        ...


def row_seed(seed: int, row_id: str) -> int:
    """A per-row sampling seed derived from the row's id: a resumed or reordered run asks each row's
    request with the same seed, so the response cache answers it and per-request backends repeat it."""
    return int(hashlib.sha256(f"{seed}:{row_id}".encode()).hexdigest()[:8], 16)


def request_seeds(params: SamplingParams, seeds: Sequence[int] | None, n: int) -> list[int]:
    if seeds is None:
        return [params.seed] * n
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} prompts")
    return list(seeds)


def choice_targets(tokenizer, text: str, choices: list[str], model: str) -> tuple[list[int], list[int]]:
    """Token ids of `text` up to where the choices diverge, and each choice's first own token.
    Works in token space because tokenizers differ on spaces before digits (' 4' vs ' ', '4')."""
    seqs = [tokenizer(text + c, add_special_tokens=False)["input_ids"] for c in choices]
    common = 0
    while all(len(s) > common for s in seqs) and len({s[common] for s in seqs}) == 1:
        common += 1
    targets = [s[common] if len(s) > common else -1 for s in seqs]
    if -1 in targets or len(set(targets)) != len(targets):
        raise ModelError(
            f"the scores {choices} do not start with distinct tokens in {model}'s tokenizer,"
            " so the 'expected' method cannot read them: use the 'sample' method"
            " (curate.method for curation, eval.pairwise_method for win rates)"
        )
    return seqs[0][:common], targets


def reply_pieces(tokenizer, messages: list[dict], reply: str) -> tuple[list[int], list[int], list[int]]:
    """Token ids of the prompt, of the reply and of the end-of-turn marker after it. Tokenised apart, as
    training tokenises prompt and target apart, so a reply is scored on the tokens it was trained on."""
    target = render_target(tokenizer, messages, reply)
    cut = target.rfind(reply) if reply else 0
    end = target[cut + len(reply) :] if cut >= 0 else (tokenizer.eos_token or "")

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    return ids(render_prompt(tokenizer, messages)), ids(reply), ids(end)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches of similar length, so little compute goes to padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def probabilities(choices: list[str], scores: Sequence[float]) -> dict[str, float]:
    """Choice -> probability from the choices' log-probabilities or logits (see renormalise); {} when no
    choice has a finite score."""
    probs = renormalise(scores)
    return {} if probs is None else dict(zip(choices, probs))


def pick_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def renormalise(scores: Sequence[float]) -> list[float] | None:
    """Softmax over log-probabilities or logits of the choices only (-inf: a choice the backend did not
    return, probability 0). None when no choice has a finite score."""
    top = max(scores)
    if top == -math.inf:
        return None
    weights = [math.exp(s - top) for s in scores]
    total = sum(weights)
    return [w / total for w in weights]


MIN_SHARED_PREFIX = 64  # tokens: below this, reading the prefix again costs less than managing it


def shared_prefix(seqs: list[list[int]]) -> int:
    """Length of the token prefix all of `seqs` share, keeping at least one own token per sequence;
    0 when it is shorter than MIN_SHARED_PREFIX or there is a single sequence."""
    if len(seqs) < 2:
        return 0
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return n if n >= MIN_SHARED_PREFIX else 0


def end_token_ids(model: str, tokenizer) -> list[int]:
    """The turn's end as the model's generation config defines it (often several ids), else EOS."""
    from transformers import GenerationConfig

    ids: list[int] = []
    try:
        eos = GenerationConfig.from_pretrained(resolve_model(model)).eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
    except OSError:
        pass
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(ids))


def side_by_side(batches: list[list[int]], workers: list, run: Callable[[object, list[int]], None]) -> None:
    """`run(worker, batch)` for every batch, each worker (a generator, an infer request) running one batch
    at a time, the workers side by side. Engines that release the GIL while they compute (CTranslate2,
    OpenVINO) need no more than Python threads; `run` writes its own results."""
    if len(workers) == 1 or len(batches) < 2:
        for idx in batches:
            run(workers[0], idx)
        return
    free, lock = list(workers), threading.Lock()

    def task(idx: list[int]) -> None:
        with lock:
            worker = free.pop()
        try:
            run(worker, idx)
        finally:
            with lock:
                free.append(worker)

    with ThreadPoolExecutor(len(workers)) as pool:
        for done in [pool.submit(task, idx) for idx in batches]:
            done.result()  # a worker's exception is raised here

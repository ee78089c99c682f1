"""What an engine was asked to do, counted: requests, prompt tokens read and tokens generated. The meter sits
between the response cache and the backend, so a reply the cache answers costs nothing; budgets
(humback/budget.py) and the manifest's `spent` read it.

Tokens are counted with the model's own tokenizer on the rendered prompt and the reply, the way `humback
plan` counts them. An OpenAI-compatible server reports its own counts (`usage`), which are what it bills:
those are used as given, and a server that reports none is counted at 4 characters a token, flagged
`estimated`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from humback.generation.base import Generator, SamplingParams
from humback.templates import render_prompt

CHARS_PER_TOKEN = 4  # a server without `usage`: English text's usual ratio in BPE vocabularies


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    estimated: int = 0  # requests counted from characters (a server that reported no usage)

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(self.astuple(), other.astuple())))

    def __sub__(self, other: Usage) -> Usage:
        return Usage(*(a - b for a, b in zip(self.astuple(), other.astuple())))

    def astuple(self) -> tuple[int, ...]:
        return (self.requests, self.prompt_tokens, self.generated_tokens, self.estimated)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def usage_of(generator: Generator) -> Usage:
    """The count so far of the meter in `generator` or behind its cache (a zero Usage where there is none,
    as for a test's fake generator)."""
    while not isinstance(getattr(generator, "usage", None), Usage):
        if not hasattr(generator, "inner"):
            return Usage()
        generator = generator.inner  # type: ignore[attr-defined]
    return Usage(**generator.usage.as_dict())  # type: ignore[attr-defined]


class MeteredGenerator:
    """The Generator protocol around a backend, counting every request that reaches it."""

    def __init__(self, inner: Generator):
        self.inner, self.usage = inner, Usage()
        self.model, self.fingerprint, self.chunk_size = inner.model, inner.fingerprint, inner.chunk_size
        self.backend = inner.backend
        self._tokenizer = getattr(inner, "tokenizer", None)
        self._served_counts = isinstance(getattr(inner, "usage", None), Usage)  # a server's own usage

    def _tok(self):
        if self._tokenizer is None:  # a backend that keeps none (llama.cpp): the model's own, loaded once
            from humback.models import load_tokenizer

            self._tokenizer = load_tokenizer(self.model)
        return self._tokenizer

    def _count(self, text: str) -> int:
        return len(self._tok()(text, add_special_tokens=False)["input_ids"])

    def _prompt(self, messages: list[dict]) -> int:
        return self._count(render_prompt(self._tok(), messages))

    def _add(self, prompts: list[int], generated: list[int]) -> None:
        self.usage += Usage(len(prompts), sum(prompts), sum(generated))

    def _served(self, call, chars: Callable) -> object:
        """`call()` on a server that counts its own tokens (`inner.usage`); its count is added, or, where it
        reported none, `chars()` (prompt characters, generated characters) at CHARS_PER_TOKEN."""
        before = usage_of(self.inner)
        try:
            result = call()
        except Exception:
            self.usage += self.inner.usage - before  # the requests that did finish were spent too
            raise
        got = self.inner.usage - before
        if got.estimated:
            prompt, generated = chars(result)
            got = Usage(got.requests, prompt // CHARS_PER_TOKEN, generated // CHARS_PER_TOKEN, got.requests)
        self.usage += got
        return result

    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[str]:
        if self._served_counts:
            return self._served(  # type: ignore[return-value]
                lambda: self.inner.generate(prompts, params, seeds),
                lambda texts: (sum(len(str(p)) for p in prompts), sum(len(t) for t in texts)),
            )
        texts = self.inner.generate(prompts, params, seeds)
        # +1: the end-of-turn token a finished reply ends with (a cut-off reply's last token stands for it)
        self._add([self._prompt(p) for p in prompts], [self._count(t) + 1 for t in texts])
        return texts

    def next_token_probs(
        self, prompts: list[list[dict]], continuations: list[str], choices: list[str]
    ) -> list[dict[str, float]]:
        if self._served_counts:
            return self._served(  # type: ignore[return-value]
                lambda: self.inner.next_token_probs(prompts, continuations, choices),
                lambda _: (sum(len(str(p)) + len(c) for p, c in zip(prompts, continuations)), len(prompts)),
            )
        probs = self.inner.next_token_probs(prompts, continuations, choices)
        self._add([self._prompt(p) + self._count(c) for p, c in zip(prompts, continuations)], [])
        return probs

    def reply_logprobs(self, prompts: list[list[dict]], replies: list[str]) -> list[dict]:
        scores = self.inner.reply_logprobs(prompts, replies)
        self._add([self._prompt(p) + len(s["tokens"]) + 1 for p, s in zip(prompts, scores)], [])
        return scores

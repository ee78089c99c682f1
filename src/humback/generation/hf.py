"""Generation with transformers: batches grouped by length, left padding, KV cache; CPU or GPU."""

from __future__ import annotations

import torch

from humback.generation.base import SamplingParams
from humback.models import ModelError, load_model, load_tokenizer
from humback.templates import render_prompt


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class TransformersGenerator:
    def __init__(self, model: str, device: str = "auto", batch_size: int = 8):
        self.model = model
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(model)
        self.tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.lm = load_model(model, dtype=dtype, device=self.device).eval()

    def _batches(self, texts: list[str]):
        """Index batches of similar length, so little compute goes to padding. Characters stand in for
        tokens: close enough to group by, and no extra tokenizer pass over every prompt."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            yield order[start:start + self.batch_size]

    def _encode(self, texts: list[str]):
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    @torch.inference_mode()
    def generate(self, prompts: list[list[dict]], params: SamplingParams) -> list[str]:
        texts = [render_prompt(self.tokenizer, p) for p in prompts]
        out: list[str | None] = [None] * len(texts)
        torch.manual_seed(params.seed)
        sample = params.temperature > 0
        for idx in self._batches(texts):
            enc = self._encode([texts[i] for i in idx])
            gen = self.lm.generate(
                **enc,
                max_new_tokens=params.max_new_tokens,
                do_sample=sample,
                temperature=params.temperature if sample else None,
                top_p=params.top_p if sample else None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1]:]
            for i, row in zip(idx, new):
                out[i] = self.tokenizer.decode(row, skip_special_tokens=True).strip()
        return out  # type: ignore[return-value]

    def _context_and_targets(self, text: str, choices: list[str]) -> tuple[list[int], list[int]]:
        """Token ids of `text` up to where the choices diverge, and each choice's first own token.
        Works in token space because tokenizers differ on spaces before digits (' 4' vs ' ', '4')."""
        seqs = [self.tokenizer(text + c, add_special_tokens=False)["input_ids"] for c in choices]
        common = 0
        while all(len(s) > common for s in seqs) and len({s[common] for s in seqs}) == 1:
            common += 1
        targets = [s[common] if len(s) > common else -1 for s in seqs]
        if -1 in targets or len(set(targets)) != len(targets):
            raise ModelError(f"the scores {choices} do not start with distinct tokens in {self.model}'s tokenizer,"
                             " so the 'expected' method cannot read them: use curate.method=sample")
        return seqs[0][:common], targets

    @torch.inference_mode()
    def next_token_probs(self, prompts: list[list[dict]], continuations: list[str], choices: list[str]) -> list[dict[str, float]]:
        texts = [render_prompt(self.tokenizer, p) + c for p, c in zip(prompts, continuations)]
        out: list[dict | None] = [None] * len(texts)
        pad = self.tokenizer.pad_token_id
        for idx in self._batches(texts):
            pieces = [self._context_and_targets(texts[i], choices) for i in idx]
            width = max(len(ctx) for ctx, _ in pieces)
            ids = torch.tensor([[pad] * (width - len(ctx)) + ctx for ctx, _ in pieces], device=self.device)
            mask = torch.tensor([[0] * (width - len(ctx)) + [1] * len(ctx) for ctx, _ in pieces], device=self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift real positions
            # logits_to_keep=1: only the last position's logits (the full tensor is batch x length x vocab).
            logits = self.lm(input_ids=ids, attention_mask=mask, position_ids=positions,
                             logits_to_keep=1).logits[:, -1, :].float()
            for i, row, (_, targets) in zip(idx, logits, pieces):
                probs = torch.softmax(row[targets], dim=-1).tolist()
                out[i] = dict(zip(choices, probs))
        return out  # type: ignore[return-value]

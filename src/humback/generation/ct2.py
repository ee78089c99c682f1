"""The fast CPU path: CTranslate2 (int8 by default), converted once from the checkpoint and cached.

CTranslate2 runs decoder-only models with its own C++ kernels. Two settings carry most of its speed on
the augmentation workload (BENCHMARKS.md, generate_backends): sampling from the `sampling_top_k` most
probable tokens before the top_p cut instead of sorting the whole vocabulary at every step, and `workers`
generators running batches side by side on one core each (small models' decoding steps do not keep two
threads busy).
Prompts are rendered and tokenised by the model's own tokenizer, exactly as for transformers, so the two
backends see the same text.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from humback.generation.base import (
    SamplingParams,
    choice_targets,
    end_token_ids,
    pick_device,
    probabilities,
    reply_pieces,
    request_seeds,
    shared_prefix,
    side_by_side,
)
from humback.models import (
    ModelError,
    cache_dir,
    converted_once,
    load_tokenizer,
    model_fingerprint,
    resolve_model,
)
from humback.templates import render_prompt


def converted_path(model: str, quantization: str, fp: str) -> Path:
    """The CTranslate2 copy of `model` (whose model_fingerprint is `fp`), converted once into the cache."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    def convert(folder: Path) -> None:
        TransformersConverter(resolve_model(model), load_as_float16=False).convert(
            str(folder), quantization=quantization, force=True
        )  # force: into our own fresh folder

    out = cache_dir() / "ctranslate2" / f"{fp}-{quantization}-{ctranslate2.__version__}"
    return converted_once(
        out, "model.bin", convert, f"{model} for CTranslate2 ({quantization})", legacy=("config.json",)
    )


def ct2_device(device: str) -> tuple[str, int]:
    """humback's device setting as CTranslate2's (device, device_index): it takes the GPU's index apart,
    so "cuda:1" is ("cuda", 1), not the first GPU."""
    kind, _, index = pick_device(device).partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise ModelError(
            f"device '{device}' is not one CTranslate2 runs on (accepted: auto, cpu, cuda, cuda:N)"
        )
    return kind, int(index or 0)


def auto_workers(device: str, model_bytes: int, cores: int) -> int:
    """Generators to run side by side: two on a CPU with two or more cores when two copies of the weights
    take under an eighth of the memory (each worker holds its own copy: CTranslate2 shares weights only
    between the workers of one generator, whose sampling cannot be seeded per batch); one otherwise."""
    if device != "cpu" or cores < 2:
        return 1
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 2 if 2 * model_bytes < memory / 8 else 1


# One sampled batch's generator is seeded at a time (see CTranslate2Generator._seeded).
_SEEDING = threading.Lock()


class CTranslate2Generator:
    backend = "ctranslate2"

    def __init__(
        self,
        model: str,
        device: str = "auto",
        batch_size: int = 8,
        compute_type: str = "int8",
        sampling_top_k: int = 1000,
        workers: int = 0,
    ):
        self.model = model
        self.device, self.device_index = ct2_device(device)
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(model)
        # Weights are stored in the compute type's storage precision (int8_float32 -> int8): CTranslate2
        # converts between them at load time, so one converted copy serves e.g. int8 and int8_float32.
        storage = compute_type.split("_")[0] if compute_type not in ("auto", "default") else "float32"
        weights = model_fingerprint(model)
        self.path, self.compute_type = converted_path(model, storage, weights), compute_type
        import torch

        cores = torch.get_num_threads()
        self.workers = workers or auto_workers(self.device, (self.path / "model.bin").stat().st_size, cores)
        self.threads = max(1, cores // self.workers)
        # Stages hand over rows sorted by characters; a few batches per call lets this regroup them by
        # tokens (digits and code tokenise longer), see _batches. Four per worker: a call ends when its
        # slowest batch does, and meanwhile the other workers idle.
        self.chunk_size = batch_size * 4 * self.workers
        self.lms = [self._load() for _ in range(self.workers)]
        # CTranslate2 refuses a top-k above the vocabulary: a cut that keeps everything is its 0.
        vocabulary = len(json.loads((self.path / "vocabulary.json").read_text()))
        self.topk = sampling_top_k if 0 < sampling_top_k < vocabulary else 0
        # The top-k cut changes which replies are sampled, so it is part of the cache key; workers are not
        # (each batch is seeded on its own, whichever worker runs it).
        self.fingerprint = f"ctranslate2:{compute_type}:k{self.topk}:{weights}"
        self.reuse_prefix = True
        self.end_tokens = self.tokenizer.convert_ids_to_tokens(end_token_ids(model, self.tokenizer))

    def _load(self):
        import ctranslate2
        import torch

        # CTranslate2 sets the calling thread's OpenMP thread count to intra_threads, which is torch's too:
        # without putting it back, one-thread workers would leave training and scoring in this process
        # (and the next generator's default) on one core.
        threads = torch.get_num_threads()
        try:
            return ctranslate2.Generator(
                str(self.path),
                device=self.device,
                device_index=self.device_index,
                compute_type=self.compute_type,
                intra_threads=self.threads,
            )
        finally:
            torch.set_num_threads(threads)

    def _seeded(self, worker: int, seed: int) -> None:
        """Give `worker` a generator whose sampling starts from `seed`, reproducibly even with workers side
        by side. CTranslate2 draws samples from a generator per thread, seeded from its global seed
        (set_random_seed) the first time the thread samples; set_random_seed alone does not reach a thread
        that already sampled (upstream issue OpenNMT/CTranslate2#1757). So: a fresh generator (a new
        thread, ~0.1 s for the default model), and one sample drawn from a one-token prompt while the
        global seed is still this batch's; the lock keeps another worker from setting its seed meanwhile."""
        import ctranslate2

        with _SEEDING:
            ctranslate2.set_random_seed(seed)
            self.lms[worker] = None  # free the old copy before building the new one
            self.lms[worker] = self._load()
            self.lms[worker].generate_batch(
                [[self.tokenizer.convert_ids_to_tokens(0)]],
                max_length=1,
                sampling_topk=2,
                include_prompt_in_result=False,
            )

    def _each_batch(self, batches: list[list[int]], run: Callable[[int, list[int]], None]) -> None:
        """`run(worker, batch)` for every batch, on `workers` generators side by side."""
        side_by_side(batches, list(range(self.workers)), run)

    def _tokens(self, texts: list[str]) -> list[list[str]]:
        if not texts:  # the fast tokenizer fails on an empty batch
            return []
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [self.tokenizer.convert_ids_to_tokens(i) for i in ids]

    def _batches(self, lengths: list[int], max_spread: int = 32) -> list[list[int]]:
        """Batches of near-equal token length. CTranslate2 feeds the part of a prompt beyond its batch's
        shortest one token at a time, at decode speed, so a batch is closed once it would span more than
        `max_spread` tokens (measured: 10 % faster than plain length-sorted batches on the demo segments)."""
        out: list[list[int]] = []
        for i in sorted(range(len(lengths)), key=lengths.__getitem__):
            if not out or len(out[-1]) == self.batch_size or lengths[i] - lengths[out[-1][0]] > max_spread:
                out.append([])
            out[-1].append(i)
        return out

    def _static_prompt(self, seqs: list[list]) -> tuple[int, dict]:
        """The curation rubric is the same long opening of every judge request: the length of the prefix
        all `seqs` (token ids or token strings) share, and the generate_batch arguments that read it once
        and reuse its state (CTranslate2's cached static prompt) instead of re-reading it per request."""
        static = shared_prefix(seqs) if self.reuse_prefix else 0
        if not static:
            return 0, {}
        head = seqs[0][:static]
        tokens = head if isinstance(head[0], str) else self.tokenizer.convert_ids_to_tokens(head)
        return static, {"static_prompt": tokens, "cache_static_prompt": True}

    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[str]:
        seeds = request_seeds(params, seeds, len(prompts))
        tokens = self._tokens([render_prompt(self.tokenizer, p) for p in prompts])
        temperature, top_p = params.effective()
        replies: list[list[int]] = [[] for _ in prompts]  # token ids; decoded here, not in the workers
        static, extra = self._static_prompt(tokens)
        tokens = [t[static:] for t in tokens]

        def run(worker: int, idx: list[int]) -> None:
            if not params.greedy:
                self._seeded(worker, seeds[idx[0]])  # one seed per batch: its first request's
            results = self.lms[worker].generate_batch(
                [tokens[i] for i in idx],
                max_length=params.max_new_tokens,
                include_prompt_in_result=False,
                end_token=self.end_tokens,
                **extra,
                # top-k first (0 = the whole vocabulary), then the top_p cut within it
                sampling_topk=1 if params.greedy else self.topk,
                sampling_topp=top_p,
                sampling_temperature=1.0 if params.greedy else temperature,
            )
            for i, res in zip(idx, results):
                replies[i] = res.sequences_ids[0]

        self._each_batch(self._batches([len(t) for t in tokens]), run)
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in replies]

    def next_token_probs(
        self, prompts: list[list[dict]], continuations: list[str], choices: list[str]
    ) -> list[dict[str, float]]:
        import numpy as np

        texts = [render_prompt(self.tokenizer, p) + c for p, c in zip(prompts, continuations)]
        pieces = [choice_targets(self.tokenizer, t, choices, self.model) for t in texts]
        out: list[dict | None] = [None] * len(texts)
        static, extra = self._static_prompt([ctx for ctx, _ in pieces])
        pieces = [(ctx[static:], targets) for ctx, targets in pieces]
        by_length: dict[int, list[int]] = {}
        for i, (ctx, _) in enumerate(pieces):
            by_length.setdefault(len(ctx), []).append(i)
        # Only prompts of one length share a batch: in a mixed batch CTranslate2 feeds the longer prompts'
        # tail through its decoding loop, and the first step's logits would be a prompt position's.
        batches = [
            g[s : s + self.batch_size] for g in by_length.values() for s in range(0, len(g), self.batch_size)
        ]

        def run(worker: int, idx: list[int]) -> None:
            # One greedy step with the vocabulary's logits of that step.
            results = self.lms[worker].generate_batch(
                [self.tokenizer.convert_ids_to_tokens(pieces[i][0]) for i in idx],
                max_length=1,
                include_prompt_in_result=False,
                return_logits_vocab=True,
                sampling_topk=1,
                **extra,
            )
            for i, res in zip(idx, results):
                logits = np.asarray(res.logits[0], dtype=np.float64).reshape(-1)
                out[i] = probabilities(choices, logits[pieces[i][1]].tolist())

        self._each_batch(batches, run)
        return out  # type: ignore[return-value]

    def reply_logprobs(self, prompts: list[list[dict]], replies: list[str]) -> list[dict]:
        pieces = [reply_pieces(self.tokenizer, p, r) for p, r in zip(prompts, replies)]
        seqs = [self.tokenizer.convert_ids_to_tokens(a + b + c) for a, b, c in pieces]
        out: list[dict | None] = [None] * len(seqs)

        def run(worker: int, idx: list[int]) -> None:
            # score_batch returns the log-probability of every token after the first; 0 = no truncation.
            results = self.lms[worker].score_batch([seqs[i] for i in idx], max_input_length=0)
            for i, res in zip(idx, results):
                _, reply, end = pieces[i]
                lp = list(res.log_probs)[-(len(reply) + len(end)) :] if reply or end else []
                out[i] = {"tokens": lp[: len(reply)], "end": sum(lp[len(reply) :])}

        self._each_batch(self._batches([len(s) for s in seqs]), run)
        return out  # type: ignore[return-value]

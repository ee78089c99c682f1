"""OpenVINO GenAI on the CPU: continuous batching over a paged KV cache with prefix caching, int8 weights.
Installed with `pip install 'humback[openvino]'`; imported only here.

The checkpoint (the default model's or a run's own fine-tuned one) is written once as a GGUF file
(gguf_export.py), which GenAI's GGUF reader turns into an OpenVINO model; that model is saved into
humback's cache and loaded from there afterwards (seconds). Generation runs on GenAI's
ContinuousBatchingPipeline, each request with its own seed. Its results carry only the generated tokens'
summed log-probability, so the two scoring requests run the same saved model directly through the
OpenVINO runtime, with the LM head cut to the positions a request needs (keep_last_logits): the judge
rubric shared by all candidates is read once per call and its KV cache copied to each candidate (the
model's beam_idx input does that copy).

Prompts are rendered and tokenised by the model's own tokenizer, exactly as for the other backends, and
passed as token ids, so every backend sees the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from humback.generation.base import (
    SamplingParams,
    choice_targets,
    end_token_ids,
    length_batches,
    probabilities,
    reply_pieces,
    request_seeds,
    shared_prefix,
    side_by_side,
)
from humback.generation.gguf_export import WEIGHT_TYPES, write_gguf
from humback.models import (
    ModelError,
    cache_dir,
    converted_once,
    load_tokenizer,
    model_fingerprint,
    resolve_model,
)
from humback.templates import render_prompt

# Token rows per scoring forward pass: memory for activations stays bounded on long prompts.
SCORE_TOKENS = 2048


def prepared_model(model: str, weights: str, fp: str) -> Path:
    """The OpenVINO copy of `model` (model_fingerprint `fp`), made once into the cache through a GGUF file."""
    import openvino_genai as og

    def convert(folder: Path) -> None:
        gguf = write_gguf(Path(resolve_model(model)), folder / "model.gguf", weights)
        # GenAI saves the model it builds from a GGUF beside the file (enable_save_ov_model).
        og.LLMPipeline(str(gguf), "CPU", enable_save_ov_model=True)
        gguf.unlink()

    out = cache_dir() / "openvino" / f"{fp}-{weights}-{og.get_version().split('-')[0]}"
    return converted_once(out, "openvino_model.xml", convert, f"{model} for OpenVINO ({weights})")


def keep_last_logits(model):
    """`model` with an input `logits_to_keep` (K): the LM head runs on the last K positions only. Scoring
    needs the next token's logits after a prompt (K = 1) or a reply's (K = its length + 1), and the head
    over a 49k vocabulary at every prompt position costs about a quarter of a judge call."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    head = model.output("logits").get_node().input_value(0).get_node()
    if head.get_type_name() != "MatMul":
        raise ModelError(
            f"the OpenVINO model's logits come from a {head.get_type_name()}, not the LM head's MatMul:"
            " this export is not one humback made; delete it from the cache to convert again"
        )
    keep = ops.parameter([1], ov.Type.i64, name="logits_to_keep")
    keep.output(0).get_tensor().set_names({"logits_to_keep"})
    one = ops.constant(np.array([1], dtype=np.int64))
    last = ops.slice(
        head.input_value(0), ops.negative(keep), ops.constant(np.array([2**62], dtype=np.int64)), one, one
    )
    head.input(0).replace_source_output(last.output(0))
    model.add_parameters([keep])
    model.validate_nodes_and_infer_types()
    return model


class OpenVINOGenerator:
    backend = "openvino"

    def __init__(
        self,
        model: str,
        batch_size: int = 8,
        compute_type: str = "int8",
        sampling_top_k: int = 1000,
        kv_cache_gb: int = 1,
    ):
        try:
            import openvino as ov
            import openvino_genai as og
        except ImportError:
            raise ModelError(
                "the openvino backend needs OpenVINO GenAI: `pip install 'humback[openvino]'`, or"
                " choose generation.backend: ctranslate2"
            ) from None
        if compute_type not in WEIGHT_TYPES:
            raise ModelError(
                f"compute_type '{compute_type}' is not one the openvino backend writes (accepted:"
                f" {', '.join(WEIGHT_TYPES)})"
            )
        self.model = model
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(model)
        weights = model_fingerprint(model)
        self.path = prepared_model(model, compute_type, weights)
        self.core = ov.Core()
        # The CPU plugin computes in bf16 where the processor has it and f32 elsewhere: part of the cache key.
        self.precision = self.core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
        scheduler = og.SchedulerConfig()
        scheduler.cache_size = kv_cache_gb  # GB of paged KV cache
        scheduler.enable_prefix_caching = True
        scheduler.max_num_seqs = batch_size
        self.pipe = og.ContinuousBatchingPipeline(str(self.path), scheduler, "CPU", {})
        self._scorer = self._infer = None  # compiled on the first scoring call
        self.topk = sampling_top_k if 0 < sampling_top_k < len(self.tokenizer) else 0
        self.end_tokens = end_token_ids(model, self.tokenizer)
        # Continuous batching takes new requests as old ones finish: a few batches per call keep it full.
        self.chunk_size = batch_size * 4
        self.fingerprint = f"openvino:{compute_type}:{self.precision}:k{self.topk}:{weights}"

    def _config(self, params: SamplingParams, seed: int):
        import openvino_genai as og

        c = og.GenerationConfig()
        c.max_new_tokens = params.max_new_tokens
        c.apply_chat_template = False  # the prompt is already rendered
        c.stop_token_ids = set(self.end_tokens)
        c.eos_token_id = self.end_tokens[0]
        if params.greedy:
            c.do_sample = False
        else:
            temperature, top_p = params.effective()
            c.do_sample, c.temperature, c.top_p, c.rng_seed = True, temperature, top_p, seed
            c.top_k = self.topk or len(self.tokenizer)
        return c

    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[str]:
        import numpy as np
        import openvino as ov

        seeds = request_seeds(params, seeds, len(prompts))
        if not prompts:
            return []
        ids = self.tokenizer([render_prompt(self.tokenizer, p) for p in prompts], add_special_tokens=False)[
            "input_ids"
        ]
        results = self.pipe.generate(
            [ov.Tensor(np.array([i], dtype=np.int64)) for i in ids], [self._config(params, s) for s in seeds]
        )
        return [
            self.tokenizer.decode(r.m_generation_ids[0], skip_special_tokens=True).strip() for r in results
        ]

    # -- scoring: logits from the saved model -----------------------------------------------------------
    def _requests(self) -> list:
        """Infer requests of the scoring model, one per CPU stream. The throughput hint runs a 135M model's
        forward passes side by side (two streams on two cores: 0.71 vs 0.97 s per 300-token sequence with
        one stream here), as CTranslate2's workers do; each request holds its own KV cache."""
        if self._scorer is None:
            model = keep_last_logits(self.core.read_model(self.path / "openvino_model.xml"))
            self._scorer = self.core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
            streams = self._scorer.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            self._infer = [self._scorer.create_infer_request() for _ in range(max(1, streams))]
        return self._infer

    def _logits(self, request, rows: list[list[int]], past: int, batch_from_past: bool, keep: int):
        """Logits [rows, keep, vocab] at each row's last `keep` positions, for `rows` (left-padded, so every
        row ends at the same place) following `past` tokens already in `request`'s KV cache (shared by
        every row when batch_from_past)."""
        import numpy as np

        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((len(rows), past + width), dtype=np.int64)
        mask[:, :past] = 1
        positions = np.full(ids.shape, past, dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = r
            mask[i, past + width - len(r) :] = 1
            positions[i, width - len(r) :] = np.arange(past, past + len(r))
        beams = (
            np.zeros(len(rows), dtype=np.int32) if batch_from_past else np.arange(len(rows), dtype=np.int32)
        )
        request.infer(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "position_ids": positions,
                "beam_idx": beams,
                "logits_to_keep": np.array([keep], dtype=np.int64),
            }
        )
        return request.get_tensor("logits").data

    def _each(self, seqs: list[list[int]], keep: list[int], use, cap: int) -> None:
        """use(i, logits at seqs[i]'s last keep[i] positions) for every sequence, in batches on the scoring
        streams side by side. The prefix every sequence shares (at most `cap` tokens: the judge's rubric)
        is read once and its KV cache copied into each batch's request."""
        import numpy as np
        import openvino as ov

        requests = self._requests()
        static, saved = min(shared_prefix(seqs), cap), None
        if static:
            requests[0].reset_state()
            self._logits(requests[0], [seqs[0][:static]], 0, False, 1)
            saved = {s.name: ov.Tensor(np.array(s.state.data)) for s in requests[0].query_state()}
        per_batch = max(1, min(self.batch_size, SCORE_TOKENS // max(1, max(len(s) - static for s in seqs))))

        def run(request, idx: list[int]) -> None:
            if saved:
                for s in request.query_state():
                    s.state = saved[s.name]
            else:
                request.reset_state()
            k = max(keep[i] for i in idx)
            logits = self._logits(request, [seqs[i][static:] for i in idx], static, bool(saved), k)
            for row, i in enumerate(idx):
                use(i, logits[row, k - keep[i] :])

        side_by_side(length_batches([len(s) for s in seqs], per_batch), requests, run)

    def next_token_probs(
        self, prompts: list[list[dict]], continuations: list[str], choices: list[str]
    ) -> list[dict[str, float]]:
        texts = [render_prompt(self.tokenizer, p) + c for p, c in zip(prompts, continuations)]
        pieces = [choice_targets(self.tokenizer, t, choices, self.model) for t in texts]
        out: list[dict | None] = [None] * len(texts)

        def use(i: int, logits) -> None:
            out[i] = probabilities(choices, logits[0, pieces[i][1]].astype("float64").tolist())

        if texts:
            contexts = [ctx for ctx, _ in pieces]
            self._each(contexts, [1] * len(texts), use, min(len(c) for c in contexts) - 1)
        return out  # type: ignore[return-value]

    def reply_logprobs(self, prompts: list[list[dict]], replies: list[str]) -> list[dict]:
        import numpy as np

        pieces = [reply_pieces(self.tokenizer, p, r) for p, r in zip(prompts, replies)]
        seqs = [a + b + c for a, b, c in pieces]
        out: list[dict | None] = [None] * len(seqs)

        def use(i: int, logits) -> None:
            _, reply, end = pieces[i]
            n = len(reply) + len(end)
            # logits: the sequence's last n + 1 positions; token j is predicted at position j - 1.
            rows = logits[:n].astype(np.float64)
            rows = rows - rows.max(axis=1, keepdims=True)
            lp = rows[np.arange(n), seqs[i][len(seqs[i]) - n :]] - np.log(np.exp(rows).sum(axis=1))
            out[i] = {"tokens": lp[: len(reply)].tolist(), "end": float(lp[len(reply) :].sum())}

        if seqs:
            # The first reply token is predicted at the prompt's last position: it stays out of the prefix.
            keep = [len(b) + len(c) + 1 for _, b, c in pieces]
            self._each(seqs, keep, use, min(len(a) for a, _, _ in pieces) - 1)
        return out  # type: ignore[return-value]

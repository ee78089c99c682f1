"""This machine's ceiling for the default model: matrix-multiply throughput at the model's own shapes,
fp32 and int8, measured in one run, turned into the most tokens/s any engine could process.

For each precision the transformer's matmuls (q, k, v, o, gate, up, down of one layer; the LM head for a
generated token) are timed with torch on all cores: fp32 with `torch.mm` (oneDNN/MKL), int8 with the
faster of `torch._int_mm` (int8 x int8 -> int32) and torch's dynamic-quantised linear (see matmul_seconds).
Two shapes per matmul:
prompt reading (256 token rows at once) and decoding (`decode_rows` rows in flight: an engine's batch size
times the batches it runs side by side; 8 by default). Per token:
- prompt token: one layer's matmuls at 256 rows / 256, times the layers, plus attention over the context
  (2 x 2 x context x hidden FLOPs per layer, at the measured fp32 rate);
- generated token: the same at decode_rows rows / decode_rows, plus the LM head (every generated token
  needs its logits).
The workload limit mixes them as the augmentation workload does (its prompt and generated tokens per
segment), in processed tokens/s (prompt + generated) and generated tokens/s. Nothing else is counted
(norms, softmax, sampling, tokenisation, Python): a real engine stays below this line.

    .venv/bin/python bench/cpu_ceiling.py            # prints the ceiling; generate_backends.py uses it
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

PROMPT_ROWS, DECODE_ROWS = 256, 8


def model_shapes(model: str = "default") -> dict:
    from humback.models import resolve_model

    cfg = json.loads((Path(resolve_model(model)) / "config.json").read_text())
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    kv = h * cfg["num_key_value_heads"] // cfg["num_attention_heads"]
    return {
        "hidden": h,
        "layers": cfg["num_hidden_layers"],
        "vocab": cfg["vocab_size"],
        # (in, out) of each matmul of one layer: q, k, v, o, gate, up, down
        "layer": [(h, h), (h, kv), (h, kv), (h, h), (h, inter), (h, inter), (inter, h)],
    }


def _seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first calls pick kernels and touch memory
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_seconds(rows: int, shapes: list[tuple[int, int]], precision: str, repeats: int = 7) -> float:
    """Seconds for one pass of `rows` token rows through the matmuls of `shapes`. int8: the faster of two
    kernel classes, `torch._int_mm` (int8 x int8 -> int32; fast with AVX-512 VNNI, very slow on AVX2-only
    processors) and torch's x86 dynamic-quantised linear (FBGEMM/oneDNN: activations quantised per call,
    AVX2 and AVX-512 kernels), so the limit is not an artefact of one kernel missing on this processor."""
    if precision == "fp32":
        pairs = [(torch.randn(rows, k), torch.randn(k, n)) for k, n in shapes]
        return _seconds(lambda: [torch.mm(a, b) for a, b in pairs], repeats)
    # torch._int_mm wants more than 16 rows: decoding's 8 or 16 rows are padded, as int8 kernels pad them.
    padded = max(rows, 17)
    pairs = [
        (
            torch.randint(-127, 127, (padded, k), dtype=torch.int8),
            torch.randint(-127, 127, (k, n), dtype=torch.int8),
        )
        for k, n in shapes
    ]
    int_mm = _seconds(lambda: [torch._int_mm(a, b) for a, b in pairs], repeats)
    return min(int_mm, dynamic_int8_seconds(rows, shapes, repeats))


def dynamic_int8_seconds(rows: int, shapes: list[tuple[int, int]], repeats: int) -> float:
    import warnings

    import torch.ao.nn.quantized.dynamic as nnqd

    layers, inputs = [], [torch.randn(rows, k) for k, _ in shapes]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notice for quantized tensors
        for k, n in shapes:
            layer = nnqd.Linear(k, n, dtype=torch.qint8)
            layer.set_weight_bias(torch.quantize_per_tensor(torch.randn(n, k), 0.01, 0, torch.qint8), None)
            layers.append(layer)
    return _seconds(lambda: [layer(x) for layer, x in zip(layers, inputs)], repeats)


def ceiling(
    prompt_tokens: float, generated_tokens: float, model: str = "default", decode_rows: int = DECODE_ROWS
) -> dict:
    """The limit for a workload of `prompt_tokens` and `generated_tokens` per request (averages), decoding
    `decode_rows` rows at a time."""
    s = model_shapes(model)
    out = {
        "threads": torch.get_num_threads(),
        "decode_rows": decode_rows,
        "shapes": s["layer"],
        "layers": s["layers"],
        "prompt_tokens_per_request": round(prompt_tokens, 1),
        "generated_tokens_per_request": generated_tokens,
    }
    flops_layer = sum(2 * k * n for k, n in s["layer"])
    fp32_rate = PROMPT_ROWS * flops_layer / matmul_seconds(PROMPT_ROWS, s["layer"], "fp32")
    # Attention reads the whole context: on average half the prompt while reading it, the prompt plus
    # half the reply while generating; 2 matmuls (scores, mix) of 2 x context x hidden FLOPs each.
    attn_prompt = s["layers"] * 4 * (prompt_tokens / 2) * s["hidden"] / fp32_rate
    attn_decode = s["layers"] * 4 * (prompt_tokens + generated_tokens / 2) * s["hidden"] / fp32_rate
    for precision in ("fp32", "int8"):
        prompt_s = (
            s["layers"] * matmul_seconds(PROMPT_ROWS, s["layer"], precision) / PROMPT_ROWS + attn_prompt
        )
        decode_s = (
            s["layers"] * matmul_seconds(decode_rows, s["layer"], precision)
            + matmul_seconds(decode_rows, [(s["hidden"], s["vocab"])], precision)
        ) / decode_rows + attn_decode
        request_s = prompt_tokens * prompt_s + generated_tokens * decode_s
        out[precision] = {
            "gemm_gflops_prompt_shapes": round(
                PROMPT_ROWS * flops_layer / matmul_seconds(PROMPT_ROWS, s["layer"], precision) / 1e9, 1
            ),
            "prompt_tokens_per_s": round(1 / prompt_s, 1),
            "generated_tokens_per_s": round(1 / decode_s, 1),
            "processed_tokens_per_s": round((prompt_tokens + generated_tokens) / request_s, 1),
            "workload_generated_tokens_per_s": round(generated_tokens / request_s, 1),
        }
    return out


def augmentation_prompt_tokens(n: int = 48) -> float:
    """Mean prompt tokens of the augmentation workload: the backward prompt over demo segments."""
    from workloads import demo_segments

    from humback.models import load_tokenizer
    from humback.templates import backward_messages, render_prompt

    tok = load_tokenizer("default")
    rows = demo_segments(n)
    return statistics.fmean(
        len(tok(render_prompt(tok, backward_messages(r["text"])), add_special_tokens=False)["input_ids"])
        for r in rows
    )


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generated", type=float, default=60.0, help="generated tokens per request")
    args = ap.parse_args()
    print(json.dumps(ceiling(augmentation_prompt_tokens(), args.generated), indent=1))

"""Published accelerator figures and the arithmetic `humback plan --hardware` turns them into time with.

Every figure is the vendor's datasheet peak (dense BF16 tensor throughput, memory bandwidth); the
efficiencies below are assumptions, not measurements, and the plan labels its times as estimates from
them. docs/plan.md holds this table with its sources and the formulas; a test keeps the two the same.

- Prompt tokens (prefill) are compute-bound: 2 x parameters FLOPs per token (Kaplan et al. 2020, arXiv
  2001.08361, "C_forward = 2N") at PREFILL_MFU of the peak.
- Generated tokens (decode) are bandwidth-bound at small batches: every step reads the weights once for all
  sequences in flight, so a replica makes DECODE_BATCH tokens per max(weight bytes / (bandwidth x
  BANDWIDTH_UTIL), DECODE_BATCH x 2 x parameters / (peak x PREFILL_MFU)) seconds. The KV cache's reads
  are left out (they grow with context: long prompts decode slower than this).
- Training: 6 x parameters FLOPs per token for full fine-tuning (forward 2N, backward 4N; Kaplan et al.
  2020) and 4 x parameters for LoRA (no weight gradients for the frozen base: its backward pass computes
  activation gradients only), at TRAIN_MFU of the peak.
"""

from __future__ import annotations

from dataclasses import dataclass

from humback.errors import HumbackError


class HardwareError(HumbackError):
    """An accelerator name the table does not hold."""


@dataclass(frozen=True)
class Accelerator:
    name: str
    bf16_tflops: float  # dense, no sparsity
    bandwidth_gbs: float  # memory bandwidth, GB/s
    memory_gb: float
    source: str


H100 = Accelerator("NVIDIA H100 SXM5 80GB", 989.4, 3350, 80, "NVIDIA H100 Tensor Core GPU datasheet")
H200 = Accelerator("NVIDIA H200 SXM 141GB", 989.4, 4800, 141, "NVIDIA H200 Tensor Core GPU datasheet")
A100 = Accelerator("NVIDIA A100 SXM4 80GB", 312.0, 2039, 80, "NVIDIA A100 Tensor Core GPU datasheet")
L4 = Accelerator("NVIDIA L4 24GB", 121.0, 300, 24, "NVIDIA L4 Tensor Core GPU datasheet")

# name -> (accelerator, how many)
HARDWARE: dict[str, tuple[Accelerator, int]] = {
    "h100x1": (H100, 1),
    "h100x8": (H100, 8),
    "h200x1": (H200, 1),
    "h200x8": (H200, 8),
    "a100x1": (A100, 1),
    "a100x8": (A100, 8),
    "l4x1": (L4, 1),
}

PREFILL_MFU = 0.5  # share of peak FLOPs a serving engine reaches reading prompts
BANDWIDTH_UTIL = 0.7  # share of peak bandwidth reached decoding
DECODE_BATCH = 256  # sequences in flight per replica (vLLM's default max_num_seqs)
TRAIN_MFU = 0.35  # share of peak FLOPs reached training
ASSUMPTIONS = {
    "prefill_mfu": PREFILL_MFU,
    "bandwidth_util": BANDWIDTH_UTIL,
    "decode_batch": DECODE_BATCH,
    "train_mfu": TRAIN_MFU,
}


def hardware(name: str) -> tuple[Accelerator, int]:
    if name not in HARDWARE:
        raise HardwareError(f"--hardware {name}: unknown; accepted: {', '.join(HARDWARE)} (docs/plan.md)")
    return HARDWARE[name]


def generation_seconds(
    name: str, params: float, weight_bytes: float, prompt_tokens: float, generated_tokens: float, tp: int
) -> dict:
    """Seconds to read `prompt_tokens` and write `generated_tokens` with a `params`-parameter model on the
    named hardware, in replicas of `tp` accelerators each; the arithmetic with it."""
    acc, count = hardware(name)
    tp = max(1, min(tp, count))
    replicas = count // tp
    flops = acc.bf16_tflops * 1e12 * tp
    prefill = prompt_tokens * 2 * params / (flops * PREFILL_MFU * replicas)
    step = max(
        weight_bytes / (acc.bandwidth_gbs * 1e9 * tp * BANDWIDTH_UTIL),
        DECODE_BATCH * 2 * params / (flops * PREFILL_MFU),
    )
    decode = generated_tokens / (DECODE_BATCH / step * replicas)
    return {
        "seconds": round(prefill + decode, 1),
        "arithmetic": (
            f"prefill {prompt_tokens:,.0f} tok x 2 x {params:.3g} params / ({replicas} x {tp} x"
            f" {acc.bf16_tflops} TFLOPS x {PREFILL_MFU}) = {prefill:,.0f} s; decode {generated_tokens:,.0f}"
            f" tok / ({replicas} replicas x {DECODE_BATCH} seqs / {step * 1e3:.2f} ms per step) ="
            f" {decode:,.0f} s"
        ),
    }


def training_seconds(name: str, params: float, tokens: float, lora: bool) -> dict:
    """Seconds to train on `tokens` tokens (steps x batch x tokens per example) on the named hardware."""
    acc, count = hardware(name)
    per_token = (4 if lora else 6) * params
    seconds = tokens * per_token / (count * acc.bf16_tflops * 1e12 * TRAIN_MFU)
    return {
        "seconds": round(seconds, 1),
        "arithmetic": (
            f"{tokens:,.0f} tok x {4 if lora else 6} x {params:.3g} params / ({count} x {acc.bf16_tflops}"
            f" TFLOPS x {TRAIN_MFU}) = {seconds:,.0f} s"
        ),
    }

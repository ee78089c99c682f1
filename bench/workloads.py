"""What the generation benchmarks share: the demo corpus's segments as a workload of any size, and an
engine config from a short spec on the command line."""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path

from humback.config import EngineConfig, SegmentConfig
from humback.data.segment import segment


def demo_segments(n: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "segments.jsonl"
        segment("demo", out, SegmentConfig(), seed=0, log=lambda s: None)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    return [dict(r, id=f"{r['id']}-{i}") for i, r in zip(range(n), itertools.cycle(rows))]


def engine(spec: str) -> EngineConfig:
    """'transformers:8' (backend, batch size), 'llamacpp', 'ctranslate2:int8:8[:workers[:top_k]]' (compute
    type, batch size, then optionally workers and sampling_top_k; the config's defaults when left out), or
    'openvino:int8:16' (weights, sequences decoded side by side), or 'vllm' (in vLLM's own environment,
    .venv-vllm: `make test-vllm` builds it)."""
    parts = spec.split(":")
    if parts[0] == "vllm":
        return EngineConfig(backend="vllm")
    if parts[0] == "openvino":
        return EngineConfig(backend="openvino", compute_type=parts[1], batch_size=int(parts[2]))
    if parts[0] == "llamacpp":
        return EngineConfig(backend="llamacpp")
    if parts[0] == "ctranslate2":
        extra = dict(zip(("workers", "sampling_top_k"), map(int, parts[3:])))
        return EngineConfig(
            backend="ctranslate2", compute_type=parts[1], batch_size=int(parts[2]), device="cpu", **extra
        )
    return EngineConfig(backend=parts[0], batch_size=int(parts[1]), device="cpu")

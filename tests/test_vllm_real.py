"""humback's vLLM backend on a real vLLM engine: vLLM's CPU build, which runs the same Python API, engine
and sampler as on GPUs. Run by `make test-vllm` in its own environment (.venv-vllm); skipped elsewhere.

On a tiny model with vLLM's supported head size and on the default model: generation (greedy, seeded per
row), the expected score's choice probabilities and the reply log-probabilities against transformers,
prefix caching leaving scores unchanged, the response cache, and a Ray Data stage with vLLM replicas.
Each engine takes a minute or two to start, so engines are shared per module.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

if not os.environ.get("HUMBACK_VLLM_REAL"):
    pytest.skip("runs in vLLM's own environment: `make test-vllm`", allow_module_level=True)
vllm = pytest.importorskip("vllm")

from conftest import CHATS, build_tiny_model
from humback.config import ClusterConfig, CurateConfig, EngineConfig
from humback.curate import curate
from humback.generation import load_generator
from humback.generation.base import SamplingParams
from humback.records import read_jsonl
from humback.rowloop import LocalRunner
from humback.runners import runner_for
from humback.scoring import CHOICES, judge_messages
from humback.templates import backward_messages

SCORES = [" " + c for c in CHOICES]
REPLIES = ["", "Rye.", "Tea is a drink made from leaves.", "Gutenberg built one."]


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory) -> str:
    # vLLM's CPU attention takes head sizes of 32 and up: 128 hidden over 2 heads of 64.
    return str(
        build_tiny_model(
            tmp_path_factory.mktemp("tiny64") / "model",
            hidden_size=128,
            intermediate_size=256,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )


@pytest.fixture(scope="module")
def engines(tiny64):
    return {
        "vllm": load_generator(EngineConfig(backend="vllm"), tiny64),
        "hf": load_generator(EngineConfig(backend="transformers", device="cpu", batch_size=2), tiny64),
    }


def close_to_transformers(hf, gen, chats, tol_prob: float, tol_lp: float) -> None:
    """vLLM reports the top 20 log-probabilities of a step: over the choices among them its distribution
    is transformers' renormalised there (on the default model all five are; on a random tiny model few)."""
    for x, y in zip(
        hf.next_token_probs(chats, ["Score:"] * len(chats), SCORES),
        gen.next_token_probs(chats, ["Score:"] * len(chats), SCORES),
    ):
        if not y:
            continue
        assert list(y) == SCORES and math.isclose(sum(y.values()), 1.0, abs_tol=1e-6)
        present = [c for c in SCORES if y[c] > 0]
        total = sum(x[c] for c in present)
        assert max(abs(x[c] / total - y[c]) for c in present) < tol_prob
    replies = REPLIES[: len(chats)]
    for x, y in zip(hf.reply_logprobs(chats, replies), gen.reply_logprobs(chats, replies)):
        assert len(x["tokens"]) == len(y["tokens"]) and abs(x["end"] - y["end"]) < tol_lp
        assert all(abs(a - b) < tol_lp for a, b in zip(x["tokens"], y["tokens"]))


def test_greedy_text_matches_transformers(engines):
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    assert engines["vllm"].generate(CHATS, params) == engines["hf"].generate(CHATS, params)


def test_scores_match_transformers(engines):
    close_to_transformers(engines["hf"], engines["vllm"], CHATS, 2e-3, 2e-2)


def test_sampling_repeats_each_rows_seed(engines):
    gen = engines["vllm"]
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=10)
    one = gen.generate(CHATS, params, seeds=[1, 2, 3, 4])
    assert gen.generate(CHATS, params, seeds=[1, 2, 3, 4]) == one
    assert gen.generate(CHATS, params, seeds=[9, 9, 9, 9]) != one
    # each request on its own seed, whatever else is in the batch (the CPU build's sampler too)
    assert gen.generate(CHATS[::-1], params, seeds=[4, 3, 2, 1]) == one[::-1]
    assert gen.generate(CHATS[:1], params, seeds=[1]) == one[:1]


def test_prefix_caching_leaves_scores_unchanged(engines):
    """Judge prompts share the rubric: the second call reads it from vLLM's prefix cache."""
    gen, hf = engines["vllm"], engines["hf"]
    chats = [judge_messages(f"Question {i}?", "An answer. " * (i + 1)) for i in range(4)]
    first = gen.next_token_probs(chats, ["Score:"] * 4, SCORES)
    again = gen.next_token_probs(chats, ["Score:"] * 4, SCORES)
    assert first == again or all(
        abs(a[k] - b[k]) < 1e-4 for a, b in zip(first, again) for k in SCORES if a and b
    )
    close_to_transformers(hf, gen, chats, 2e-3, 2e-2)


def test_the_default_model():
    """The real model: greedy text, choice probabilities and IFD's log-likelihoods agree with transformers
    within bf16/fp32 tolerance."""
    gen = load_generator(EngineConfig(backend="vllm"), "default")
    hf = load_generator(EngineConfig(backend="transformers", device="cpu", batch_size=2), "default")
    params = SamplingParams(temperature=0.0, max_new_tokens=16)
    a, b = gen.generate(CHATS, params), hf.generate(CHATS, params)
    assert sum(x == y for x, y in zip(a, b)) >= 2 and all(a)
    close_to_transformers(hf, gen, CHATS, 0.05, 0.5)
    sampled = gen.generate(
        [backward_messages("Bread is flour, water and salt.")] * 3,
        SamplingParams(temperature=0.7, max_new_tokens=24),
        seeds=[5, 6, 5],
    )
    assert sampled[0] == sampled[2] and all(sampled)


def test_a_ray_stage_with_vllm_replicas(engines, tiny64, tmp_path):
    ray = pytest.importorskip("ray")
    cands = tmp_path / "candidates.jsonl"
    cands.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"c{i}",
                    "instruction": f"How do I bake loaf {i}?",
                    "response": f"Knead for {i + 5} minutes, proof, bake.",
                }
            )
            + "\n"
            for i in range(6)
        )
    )
    cfg = CurateConfig(method="expected", max_new_tokens=0, ifd=True, threshold=1.0)
    engine = EngineConfig(backend="vllm")
    local = curate(cands, LocalRunner(engines["vllm"]), tmp_path / "local", cfg)
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    try:
        on_ray = curate(
            cands,
            runner_for(engine, tiny64, None, ClusterConfig(engine="ray", replicas=1, shard_rows=3)),
            tmp_path / "ray",
            cfg,
        )
    finally:
        ray.shutdown()
    a, b = (list(read_jsonl(Path(tmp_path / d / "scored.jsonl"))) for d in ("local", "ray"))
    assert [r["id"] for r in a] == [r["id"] for r in b] == [f"c{i}" for i in range(6)]
    for x, y in zip(a, b):
        assert x["judge_score"] == pytest.approx(y["judge_score"], abs=1e-3)
    assert on_ray["backend"] == local["backend"] == "vllm" and on_ray["rows"] == 6

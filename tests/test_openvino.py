"""The OpenVINO GenAI backend and the GGUF export it runs on, on the tiny model: the export is the same
model (read back by transformers), the backend agrees with transformers in float16 weights, seeds each
request on its own, reuses the rubric's KV cache without changing scores, and converts once."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import CHATS
from humback.config import EngineConfig
from humback.generation import load_generator
from humback.generation.base import SamplingParams, shared_prefix
from humback.models import ModelError

pytest.importorskip("openvino_genai", reason="pip install 'humback[openvino]' to run the OpenVINO tests")

CHOICES = [" 1", " 2", " 3", " 4", " 5"]


@pytest.fixture(scope="module")
def hf(tiny_model):
    return load_generator(EngineConfig(backend="transformers", device="cpu", batch_size=2), tiny_model)


@pytest.fixture(scope="module")
def ov16(tiny_model):
    return load_generator(EngineConfig(backend="openvino", compute_type="float16", batch_size=2), tiny_model)


@pytest.mark.parametrize("weights", ["float16", "int8"])
def test_gguf_export_is_the_same_model(tiny_model, tmp_path, weights):
    """transformers reads the exported file back (undoing the rotary interleave) to the same logits."""
    from transformers import AutoModelForCausalLM

    from humback.generation.gguf_export import write_gguf

    write_gguf(Path(tiny_model), tmp_path / "m.gguf", weights)
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32)
    orig = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 64]])
    with torch.no_grad():
        a, b = orig(ids).logits, back(ids).logits
    assert (a - b).abs().max().item() < (2e-3 if weights == "float16" else 3e-2)


def test_gguf_export_refuses_other_architectures(tmp_path):
    from humback.generation.gguf_export import write_gguf

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelError, match="'gpt2' model.*handles llama.*ctranslate2"):
        write_gguf(tmp_path, tmp_path / "m.gguf")


def test_greedy_text_matches_transformers(hf, ov16):
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    assert ov16.generate(CHATS, params) == hf.generate(CHATS, params)


def test_scores_match_transformers(hf, ov16):
    conts = ["Score:"] * len(CHATS)
    for x, y in zip(hf.next_token_probs(CHATS, conts, CHOICES), ov16.next_token_probs(CHATS, conts, CHOICES)):
        assert list(y) == CHOICES and math.isclose(sum(y.values()), 1.0, abs_tol=1e-6)
        assert all(abs(x[c] - y[c]) < 1e-3 for c in CHOICES)
    replies = ["", "Rye.", "Tea is a drink made from leaves.", "Gutenberg."]
    for x, y in zip(hf.reply_logprobs(CHATS, replies), ov16.reply_logprobs(CHATS, replies)):
        assert len(x["tokens"]) == len(y["tokens"]) and abs(x["end"] - y["end"]) < 1e-2
        assert all(abs(a - b) < 1e-2 for a, b in zip(x["tokens"], y["tokens"]))


def test_the_rubric_is_read_once_without_changing_scores(hf, ov16):
    """Judge prompts share the ~500-token rubric: its KV cache is computed once and copied to each
    candidate, and the answers are transformers' (which reads every prompt whole)."""
    from humback.scoring import CHOICES as SCORES
    from humback.scoring import judge_messages

    chats = [judge_messages(f"Question {i}?", "An answer. " * (i + 1)) for i in range(5)]
    ids = [ov16.tokenizer(ov16.tokenizer.apply_chat_template(c, tokenize=False))["input_ids"] for c in chats]
    assert shared_prefix(ids) > 300
    choices = [" " + c for c in SCORES]
    for x, y in zip(
        hf.next_token_probs(chats, ["Score:"] * 5, choices),
        ov16.next_token_probs(chats, ["Score:"] * 5, choices),
    ):
        assert all(abs(x[c] - y[c]) < 1e-3 for c in choices)
    # replies after one shared prompt: the first reply token is still scored (the prompt's last position)
    same = [chats[0]] * 3
    replies = ["An answer.", "An answer, longer.", "Another."]
    for x, y in zip(hf.reply_logprobs(same, replies), ov16.reply_logprobs(same, replies)):
        assert len(x["tokens"]) == len(y["tokens"]) and all(
            abs(a - b) < 1e-2 for a, b in zip(x["tokens"], y["tokens"])
        )


def test_each_request_has_its_own_seed(ov16):
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=10)
    one = ov16.generate(CHATS, params, seeds=[1, 2, 3, 4])
    assert (
        ov16.generate(CHATS[::-1], params, seeds=[4, 3, 2, 1]) == one[::-1]
    )  # whatever else is in the batch
    assert ov16.generate(CHATS[:1], params, seeds=[1]) == one[:1]
    assert ov16.generate(CHATS, params, seeds=[9, 9, 9, 9]) != one


def test_conversion_is_cached_and_the_fingerprint_names_what_changes_replies(tiny_model, ov16, capsys):
    again = load_generator(EngineConfig(backend="openvino", compute_type="float16"), tiny_model)
    assert "converting" not in capsys.readouterr().out and again.path == ov16.path
    kind, weights, precision, topk, _ = ov16.fingerprint.split(":")
    assert (kind, weights, topk) == ("openvino", "float16", "k0") and precision in ("f32", "bf16", "f16")
    int8 = load_generator(EngineConfig(backend="openvino", compute_type="int8"), tiny_model)
    assert int8.fingerprint != ov16.fingerprint and int8.path != ov16.path


def test_a_killed_conversion_leaves_nothing_behind(tiny_model, monkeypatch):
    from humback.generation import openvino

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(openvino, "write_gguf", killed)
    with pytest.raises(KeyboardInterrupt):
        openvino.prepared_model(tiny_model, "float16", "killed-conversion")
    folder = openvino.cache_dir() / "openvino"
    left = [p.name for p in folder.iterdir() if "killed-conversion" in p.name]
    assert left and all(
        name.endswith(".lock") for name in left
    )  # the lock file only: no model, no temp folder


def test_unknown_weights_are_refused_with_the_accepted_ones(tiny_model):
    with pytest.raises(ModelError, match="accepted: int8, float16"):
        load_generator(EngineConfig(backend="openvino", compute_type="int8_float32"), tiny_model)

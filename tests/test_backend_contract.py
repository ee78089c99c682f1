"""The Generator protocol's edge cases, asked of every local backend alike: the stages rely on each of
these, so a backend that answers differently breaks them in its own way."""

from __future__ import annotations

import importlib.util
import math

import pytest

from humback.config import EngineConfig
from humback.generation import load_generator
from humback.generation.base import SamplingParams, probabilities
from humback.models import ModelError

CHATS = [
    [{"role": "user", "content": "Name a bread."}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "Explain how yeast makes dough rise, step by step, for a beginner."}],
]
CHOICES = [" 1", " 2", " 3", " 4", " 5"]
BACKENDS = {
    "transformers": {"backend": "transformers", "device": "cpu"},
    "ctranslate2-float32": {"backend": "ctranslate2", "compute_type": "float32"},
    "ctranslate2-int8": {"backend": "ctranslate2", "compute_type": "int8"},
}
if importlib.util.find_spec("openvino_genai"):  # humback[openvino]
    BACKENDS |= {
        "openvino-float16": {"backend": "openvino", "compute_type": "float16"},
        "openvino-int8": {"backend": "openvino", "compute_type": "int8"},
    }


@pytest.fixture(scope="module", params=list(BACKENDS))
def gen(request, tiny_model):
    return load_generator(EngineConfig(batch_size=2, **BACKENDS[request.param]), tiny_model)


def test_no_requests_no_replies(gen):
    assert gen.generate([], SamplingParams()) == []
    assert gen.next_token_probs([], [], CHOICES) == []
    assert gen.reply_logprobs([], []) == []


def test_seeds_must_match_the_requests(gen):
    with pytest.raises(ValueError, match="2 seeds for 3 prompts"):
        gen.generate(CHATS, SamplingParams(max_new_tokens=2), seeds=[1, 2])


def test_greedy_ignores_seeds_and_top_p(gen):
    a = gen.generate(CHATS, SamplingParams(temperature=0.0, top_p=0.5, max_new_tokens=6), seeds=[1, 2, 3])
    b = gen.generate(CHATS, SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=6), seeds=[7, 8, 9])
    assert a == b and len(a) == len(CHATS) and all(isinstance(t, str) for t in a)


def test_one_new_token_at_most(gen):
    tokenizer = gen.tokenizer
    for text in gen.generate(CHATS, SamplingParams(temperature=0.0, max_new_tokens=1)):
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 1


def test_choice_probabilities_cover_the_choices_and_sum_to_one(gen):
    dists = gen.next_token_probs(CHATS, ["Score:"] * len(CHATS), CHOICES)
    for d in dists:
        assert list(d) == CHOICES and math.isclose(sum(d.values()), 1.0, abs_tol=1e-6)
        assert all(0.0 <= p <= 1.0 for p in d.values())


def test_choices_sharing_a_first_token_are_refused_with_the_fix(gen):
    with pytest.raises(ModelError, match="use the 'sample' method"):
        gen.next_token_probs(CHATS[:1], ["Score:"], [" 1", " 1"])


def test_an_empty_reply_has_no_tokens_and_a_finite_end(gen):
    scored = gen.reply_logprobs(CHATS, ["", "Rye.", "Yeast eats sugar and makes gas."])
    assert scored[0]["tokens"] == [] and all(len(s["tokens"]) > 0 for s in scored[1:])
    for s in scored:
        assert math.isfinite(s["end"]) and s["end"] <= 0 and all(lp <= 0 for lp in s["tokens"])


def test_no_choice_with_probability_is_an_empty_answer():
    """What every backend returns when no choice has a probability (a server's top-k missed them all)."""
    assert probabilities(["a", "b"], [-math.inf, -math.inf]) == {}
    assert probabilities(["a", "b"], [0.0, -math.inf]) == {"a": 1.0, "b": 0.0}


def test_ctranslate2_keeps_the_gpu_index():
    from humback.generation.ct2 import ct2_device

    assert (
        ct2_device("cuda:1") == ("cuda", 1)
        and ct2_device("cuda") == ("cuda", 0)
        and ct2_device("cpu") == ("cpu", 0)
    )
    for bad in ("cuda:x", "tpu", "cpu:1"):
        with pytest.raises(ModelError, match="not one CTranslate2 runs on"):
            ct2_device(bad)

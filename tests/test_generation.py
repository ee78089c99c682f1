"""Generation backends on the tiny model: CPU backends agree, the response cache answers repeats, model
fingerprints follow the weights, and the vLLM / OpenAI request mappings are right."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch

from conftest import CHATS
from humback.augment import augment
from humback.config import AugmentConfig, ConfigError, EngineConfig, load_config
from humback.generation import load_generator
from humback.generation.base import GenerationError, SamplingParams, UnsupportedRequest
from humback.generation.cache import CachedGenerator, ResponseCache
from humback.rowloop import LocalRunner
from humback.templates import backward_messages


@pytest.fixture(scope="module")
def hf(tiny_model):
    return load_generator(EngineConfig(backend="transformers", device="cpu", batch_size=2), tiny_model)


@pytest.fixture(scope="module")
def ct2_float(tiny_model):
    return load_generator(
        EngineConfig(backend="ctranslate2", compute_type="float32", batch_size=2), tiny_model
    )


def test_ctranslate2_float32_greedy_matches_transformers(hf, ct2_float):
    """Same template, same tokens, same end tokens: greedy text must be identical in float32."""
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    assert ct2_float.generate(CHATS, params) == hf.generate(CHATS, params)


def test_ctranslate2_next_token_probs_match_transformers(hf, ct2_float):
    choices = [" 1", " 2", " 3", " 4", " 5"]
    conts = ["Score:"] * len(CHATS)
    a, b = hf.next_token_probs(CHATS, conts, choices), ct2_float.next_token_probs(CHATS, conts, choices)
    for x, y in zip(a, b):
        assert set(x) == set(choices) and math.isclose(sum(y.values()), 1.0, abs_tol=1e-6)
        assert all(abs(x[c] - y[c]) < 1e-3 for c in choices)


def test_sampling_is_seeded_per_request(ct2_float):
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=10)
    one = ct2_float.generate(CHATS, params, seeds=[1, 2, 3, 4])
    assert ct2_float.generate(CHATS, params, seeds=[1, 2, 3, 4]) == one
    assert ct2_float.generate(CHATS, params, seeds=[9, 9, 9, 9]) != one


def test_ctranslate2_conversion_is_cached(tiny_model, ct2_float):
    from humback.generation.ct2 import converted_path
    from humback.models import model_fingerprint

    fp = model_fingerprint(tiny_model)
    path = converted_path(tiny_model, "float32", fp)
    stamp = (path / "model.bin").stat().st_mtime_ns
    assert (
        converted_path(tiny_model, "float32", fp) == path and (path / "model.bin").stat().st_mtime_ns == stamp
    )
    assert not list(path.parent.glob("*.tmp"))


def test_cpu_backends_give_the_same_rows(tmp_path, hf, ct2_float):
    segments = tmp_path / "segments.jsonl"
    segments.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "text": f"Paragraph {i} about baking. " * (i + 1)}) + "\n"
            for i in range(7)
        )
    )
    cfg = AugmentConfig(max_new_tokens=6)
    for name, gen in (("hf", hf), ("ct2", ct2_float)):
        stats = augment(segments, LocalRunner(gen), tmp_path / f"{name}.jsonl", cfg, seed=3)
        assert stats["rows"] == 7
    rows = {
        name: [json.loads(x) for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        for name in ("hf", "ct2")
    }
    assert [r["id"] for r in rows["hf"]] == [r["id"] for r in rows["ct2"]] == [f"s{i}" for i in range(7)]


class Counting:
    """Records what reaches the backend behind the cache."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.fail_after = inner, fail_after
        self.model, self.fingerprint, self.chunk_size = inner.model, inner.fingerprint, inner.chunk_size
        self.backend = inner.backend
        self.asked: list[int] = []

    def generate(self, prompts, params, seeds=None):
        self.asked.append(len(prompts))
        texts = self.inner.generate(prompts, params, seeds)
        if self.fail_after is not None:
            raise GenerationError("server went away", dict(enumerate(texts[: self.fail_after])))
        return texts

    def next_token_probs(self, prompts, conts, choices):
        self.asked.append(len(prompts))
        return self.inner.next_token_probs(prompts, conts, choices)


def test_cache_answers_repeats_across_instances(tmp_path, hf):
    params = SamplingParams(temperature=0.7, max_new_tokens=6)
    first = Counting(hf)
    out = CachedGenerator(first, ResponseCache(tmp_path / "c.sqlite")).generate(CHATS, params, [1, 2, 3, 4])
    again = Counting(hf)
    cached = CachedGenerator(again, ResponseCache(tmp_path / "c.sqlite"))
    assert cached.generate(CHATS, params, [1, 2, 3, 4]) == out and again.asked == []
    # A new seed for one request, or another sampling setting, is a new request.
    cached.generate(CHATS, params, [1, 2, 3, 5])
    assert again.asked == [1]
    cached.generate(CHATS[:1], SamplingParams(temperature=0.7, max_new_tokens=7), [1])
    assert again.asked == [1, 1]
    probs = cached.next_token_probs(CHATS, ["Score:"] * 4, [" 1", " 2"])
    assert cached.next_token_probs(CHATS, ["Score:"] * 4, [" 1", " 2"]) == probs and again.asked == [1, 1, 4]


def test_cache_keeps_replies_of_a_failed_call(tmp_path, hf):
    params = SamplingParams(temperature=0.0, max_new_tokens=5)
    cache = ResponseCache(tmp_path / "c.sqlite")
    with pytest.raises(GenerationError):
        CachedGenerator(Counting(hf, fail_after=3), cache).generate(CHATS, params)
    rerun = Counting(hf)
    texts = CachedGenerator(rerun, cache).generate(CHATS, params)
    # Only the request that had not finished, and any whose reply was empty (asked again, never cached).
    assert rerun.asked == [1 + sum(not t for t in texts[:3])]


def test_cache_is_keyed_by_model_weights(tmp_path, tiny_model):
    import torch
    from safetensors.torch import load_file, save_file

    from humback.models import model_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    assert model_fingerprint(str(copy)) == model_fingerprint(tiny_model)
    weights = load_file(copy / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + torch.ones_like(weights[name])
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    assert model_fingerprint(str(copy)) != model_fingerprint(tiny_model)


def test_roles_override_only_what_they_name():
    cfg = load_config(
        None,
        [
            "generation.backend=transformers",
            "generation.batch_size=3",
            "generation.judge.backend=openai",
            "generation.judge.model=big-judge",
            "generation.judge.base_url=http://127.0.0.1:9/v1",
        ],
    )
    judge, backward = cfg.generation.role("judge"), cfg.generation.role("backward")
    assert (judge.backend, judge.model, judge.batch_size) == ("openai", "big-judge", 3)
    assert (backward.backend, backward.model, backward.batch_size) == ("transformers", None, 3)


def test_openai_role_without_a_model_is_a_config_error():
    cfg = load_config(None, ["generation.judge.backend=openai"])
    cfg.generation.role("backward")  # complete: only the judge lacks its served model
    with pytest.raises(ConfigError, match="generation.judge: the openai backend needs `model`"):
        cfg.generation.role("judge")


def test_vllm_request_mapping():
    from humback.generation.base import renormalise
    from humback.generation.vllm import sampling_kwargs

    assert sampling_kwargs(SamplingParams(0.7, 0.9, 128), 11) == {
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 128,
        "seed": 11,
        "skip_special_tokens": True,
    }
    assert sampling_kwargs(SamplingParams(0.0, 0.9, 5), 1)["top_p"] == 1.0
    # top-k log-probabilities {7: 0.3, 8: 0.1, 99: 0.5} read for the targets 7, 8, 9 (9 not returned)
    probs = renormalise([math.log(0.3), math.log(0.1), -math.inf])
    assert probs == pytest.approx([0.75, 0.25, 0.0])
    assert renormalise([-math.inf, -math.inf]) is None


def test_openai_logprob_mapping():
    from humback.generation.openai_api import choice_probs

    top = [(" 4", math.log(0.4)), ("4", math.log(0.2)), (" 5", math.log(0.2)), ("The", math.log(0.1))]
    assert choice_probs(top, [" 1", " 4", " 5"]) == pytest.approx({" 1": 0.0, " 4": 0.75, " 5": 0.25})
    assert choice_probs([("The", 0.0)], [" 1", " 2"]) == {}


@pytest.mark.gpu
def test_vllm_real_engine(tiny_model):
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    gen = load_generator(EngineConfig(backend="vllm", gpu_memory_utilization=0.3), tiny_model)
    params = SamplingParams(temperature=0.7, max_new_tokens=8)
    out = gen.generate([backward_messages("Some text.")] * 3, params, [1, 2, 1])
    assert len(out) == 3 and out[0] == out[2]
    dists = gen.next_token_probs(CHATS, ["Score:"] * 4, [" 1", " 2", " 3", " 4", " 5"])
    assert all(not d or math.isclose(sum(d.values()), 1.0, abs_tol=1e-6) for d in dists)


def test_ctranslate2_reuses_the_rubric_prefix_without_changing_scores(ct2_float):
    """The curation rubric is read once (a cached static prompt); in float32 the distributions are the
    same as reading every prompt whole."""
    from humback.generation.ct2 import shared_prefix
    from humback.scoring import CHOICES, judge_messages

    chats = [judge_messages(f"Question {i}?", "An answer. " * (i + 1)) for i in range(5)]
    choices = [" " + c for c in CHOICES]
    ids = [
        ct2_float.tokenizer(ct2_float.tokenizer.apply_chat_template(c, tokenize=False))["input_ids"]
        for c in chats
    ]
    assert shared_prefix(ids) > 300  # the rubric
    ct2_float.reuse_prefix = False
    whole = ct2_float.next_token_probs(chats, ["Score:"] * 5, choices)
    ct2_float.reuse_prefix = True
    reused = ct2_float.next_token_probs(chats, ["Score:"] * 5, choices)
    for a, b in zip(whole, reused):
        assert all(abs(a[c] - b[c]) < 1e-5 for c in choices)
    # generation too: greedy judge replies are the same text whether the rubric is reused or read whole
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    ct2_float.reuse_prefix = False
    whole_text = ct2_float.generate(chats, params)
    ct2_float.reuse_prefix = True
    assert ct2_float.generate(chats, params) == whole_text
    assert shared_prefix([[1] * 100]) == 0 and shared_prefix([[1] * 100, [1] * 50 + [2] * 50]) == 0
    assert shared_prefix([[1] * 100 + [3], [1] * 100 + [2] * 5]) == 100


def test_reply_logprobs_agree_across_backends_and_match_a_plain_forward_pass(hf, ct2_float, tiny_model):
    """Each reply token's log-probability, and the end marker's after it, as one forward pass over
    prompt + reply + <|im_end|> computes them by hand."""
    import torch

    from humback.templates import render_prompt

    replies = [
        "Bread is flour, water and salt.",
        "A starter needs feeding.\nDaily.",
        "Tea.",
        "Presses spread books.",
    ]
    a, b = hf.reply_logprobs(CHATS, replies), ct2_float.reply_logprobs(CHATS, replies)
    tok = hf.tokenizer
    for chat, reply, x, y in zip(CHATS, replies, a, b):
        prompt = tok(render_prompt(tok, chat), add_special_tokens=False)["input_ids"]
        body = tok(reply, add_special_tokens=False)["input_ids"]
        end = [tok.convert_tokens_to_ids("<|im_end|>")]
        ids = torch.tensor([prompt + body + end])
        with torch.no_grad():
            logp = torch.log_softmax(hf.lm(input_ids=ids).logits[0].float(), -1)
        want = [logp[len(prompt) - 1 + j, t].item() for j, t in enumerate(body + end)]
        assert len(x["tokens"]) == len(body) == len(y["tokens"])
        assert all(abs(p - q) < 1e-4 for p, q in zip(x["tokens"], want[:-1]))
        assert abs(x["end"] - want[-1]) < 1e-4
        assert (
            all(abs(p - q) < 1e-3 for p, q in zip(x["tokens"], y["tokens"]))
            and abs(x["end"] - y["end"]) < 1e-3
        )


def test_cache_answers_reply_logprobs(tmp_path, hf):
    cached = CachedGenerator(hf, ResponseCache(tmp_path / "c.sqlite"))
    first = cached.reply_logprobs(CHATS[:2], ["one", "two"])
    again = CachedGenerator(hf, ResponseCache(tmp_path / "c.sqlite"))
    assert again.reply_logprobs(CHATS[:2], ["one", "two"]) == first
    assert (again.cache.hits, again.cache.misses) == (2, 0)
    again.reply_logprobs(CHATS[:2], ["one", "three"])
    assert again.cache.misses == 1


def test_openai_backend_says_it_cannot_score_given_replies(monkeypatch):
    from humback.generation.openai_api import OpenAIGenerator

    gen = OpenAIGenerator("some-model", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(UnsupportedRequest, match="local backend") as err:
        gen.reply_logprobs(CHATS[:1], ["x"])
    assert err.value.exit_code == 2  # a setting to change, not a fault to wait out


def test_vllm_reply_scores_read_the_tail_of_prompt_logprobs():
    from types import SimpleNamespace

    from humback.generation.vllm import reply_scores

    seq = [5, 6, 7, 8, 9]  # 2 prompt tokens, 2 reply tokens, 1 end token
    lp = [None] + [{t: SimpleNamespace(logprob=-float(t)), 1: SimpleNamespace(logprob=-0.1)} for t in seq[1:]]
    assert reply_scores(lp, seq, 2, 1) == {"tokens": [-7.0, -8.0], "end": -9.0}


def test_ctranslate2_workers_sample_what_one_worker_samples(tiny_model):
    """Batches run side by side on two generators, each seeded by its batch's first request: the replies
    must not depend on how many workers there are or which one ran a batch (the cache key leaves them out)."""
    chats = [[{"role": "user", "content": f"{w} number {i}"}] for i in range(6) for w in ("tell", "write")]
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=12)
    seeds = list(range(100, 100 + len(chats)))
    threads = torch.get_num_threads()
    one, two = (
        load_generator(
            EngineConfig(backend="ctranslate2", compute_type="float32", batch_size=2, workers=w), tiny_model
        )
        for w in (1, 2)
    )
    # CTranslate2's one-thread workers must not leave torch (training, scoring) on one thread.
    assert torch.get_num_threads() == threads
    assert (one.workers, two.workers, one.fingerprint) == (1, 2, two.fingerprint)
    expected = one.generate(chats, params, seeds)
    for _ in range(3):  # thread timing differs between runs; the replies must not
        assert two.generate(chats, params, seeds) == expected
    # Probabilities are sums over a different number of threads: equal to float precision, not bit for bit
    # (on some CPUs the one-thread and two-thread reductions differ in the last digits).
    got = two.next_token_probs(chats, ["Score:"] * len(chats), [" 1", " 2"])
    assert got == [
        pytest.approx(p, rel=1e-5, abs=1e-7)
        for p in one.next_token_probs(chats, ["Score:"] * len(chats), [" 1", " 2"])
    ]
    assert torch.get_num_threads() == threads


def test_ctranslate2_runs_two_workers_only_where_two_copies_fit():
    from humback.generation.ct2 import auto_workers

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert auto_workers("cpu", 100 * 2**20, cores=2) == 2
    assert auto_workers("cpu", memory // 10, cores=8) == 1  # two copies would take a fifth of the memory
    assert auto_workers("cpu", 100 * 2**20, cores=1) == 1
    assert auto_workers("cuda", 100 * 2**20, cores=16) == 1


def test_openai_backend_asks_the_server_to_continue_a_begun_reply(monkeypatch):
    from humback.generation.openai_api import OpenAIGenerator

    gen = OpenAIGenerator("some-model", base_url="http://127.0.0.1:9/v1")
    sent = []
    monkeypatch.setattr(gen, "_run", lambda calls, read: sent.extend(calls) or ["x"] * len(calls))
    begun = CHATS[0] + [{"role": "assistant", "content": "<rewritten>"}]
    gen.generate([CHATS[0], begun], SamplingParams(max_new_tokens=4))
    assert "extra_body" not in sent[0]
    assert sent[1]["extra_body"] == {"continue_final_message": True, "add_generation_prompt": False}
    assert sent[1]["messages"][-1] == {"role": "assistant", "content": "<rewritten>"}

import math

import pytest

from humback.config import ConfigError, CurateConfig, load_config
from humback.scoring import combined_score, histogram, parse_score, score_rows, select_ids

# (judge reply, expected parse)
CASES = [
    ("Score: 5", 5),
    ("The answer is complete.\nScore: 4", 4),
    ("score: 3", 3),
    ("Score: 4.", 4),
    ("**Score:** 4", 4),
    ("**Score: 2**", 2),
    ("Score: **3**", 3),
    ("Score: 5/5", 5),
    ("Score = 1", 1),
    ("SCORE:2", 2),
    ("Score: 4.0", 4),
    ("First I thought Score: 2, but on reflection\nScore: 4", 4),  # the last one wins
    ("Score: 4\nScore: 91", None),  # the last one is out of range: not coerced, not the earlier one
    ("Score: 91", None),
    ("Score: 10502", None),
    ("Score: 0", None),
    ("Score: 6", None),
    ("Score: 4.5", None),  # the scale is integer; averaging is the job of mean-of-k, not the parser
    ("Score: -3", None),
    ("", None),
    (None, None),
    ("The answer is good. I would rate it 4 out of 5.", None),  # no "Score:" at all
    ("Score:", None),
    ("Score: N/A", None),
    ("Rating: 5", None),
    ("blah " * 5000 + "\nScore: 3", 3),  # very long reasoning
    ("Score: 3 — the answer reads like a blog post", 3),
    ("score : 2", 2),
    ("Score: 10/10", None),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_parse_score(text, expected):
    assert parse_score(text) == expected


def test_histogram_buckets_and_unparsed():
    assert histogram([1, 5, 5, None, 3.49, 3.5, 4.2]) == {
        "1": 1,
        "2": 0,
        "3": 1,
        "4": 2,
        "5": 2,
        "unparsed": 1,
    }


def _cfg(**kw) -> CurateConfig:
    return CurateConfig(**{"near_duplicate_instructions": None, **kw})


def test_select_threshold_order_and_cap():
    cands = [{"id": str(i), "instruction": f"instruction number {i}"} for i in range(5)]
    scored = {
        "0": {"score": 4.0},
        "1": {"score": None},
        "2": {"score": 4.6},
        "3": {"score": 3.9},
        "4": {"score": 5},
    }
    assert select_ids(cands, scored, _cfg(threshold=4.0)) == ["4", "2", "0"]
    assert select_ids(cands, scored, _cfg(threshold=4.0, max_selected=2)) == ["4", "2"]
    assert select_ids(cands, scored, _cfg(threshold=5.0)) == ["4"]
    assert select_ids(cands, scored, _cfg(threshold=1.0, top_fraction=0.5)) == ["4", "2"]  # 0.5 of 5 -> 2
    assert select_ids(cands, scored, _cfg(threshold=1.0, top_fraction=0.01)) == ["4"]


def test_selection_skips_near_duplicate_instructions_of_better_ones():
    cands = [
        {"id": "a", "instruction": "Write a short poem about the sea at night."},
        {"id": "b", "instruction": "Write a short poem about the sea at night!"},  # same after normalising
        {"id": "c", "instruction": "Write a short poem about the sea at night, please."},  # near-duplicate
        {"id": "d", "instruction": "Explain how a bicycle gear works."},
        {"id": "e", "instruction": "How do I repot a cactus without getting hurt?"},
    ]
    scored = {
        "a": {"score": 4.9},
        "b": {"score": 4.8},
        "c": {"score": 4.7},
        "d": {"score": 4.2},
        "e": {"score": 4.1},
    }
    assert select_ids(cands, scored, CurateConfig(threshold=4.0)) == ["a", "d", "e"]
    # a cap counts selected rows, not skipped ones
    assert select_ids(cands, scored, CurateConfig(threshold=4.0, max_selected=2)) == ["a", "d"]
    assert select_ids(cands, scored, _cfg(threshold=4.0)) == ["a", "b", "c", "d", "e"]


class FakeJudge:
    """Test double for the Generator protocol: replies and log-probabilities chosen by the test."""

    model, fingerprint, chunk_size, backend = "fake", "fake:0", 8, "fake"

    def __init__(self, replies=None, dist=None, logprobs=None):
        self.replies = replies or (lambda prompt, seed: "Score: 4")
        self.dist = dist or {" 1": 0.0, " 2": 0.0, " 3": 0.5, " 4": 0.5, " 5": 0.0}
        self.logprobs = logprobs or (lambda prompt, reply: {"tokens": [-1.0] * 4, "end": -0.5})
        self.calls: list[tuple] = []

    def generate(self, prompts, params, seeds=None):
        self.calls.append(("generate", params.temperature, tuple(seeds)))
        return [self.replies(p, s) for p, s in zip(prompts, seeds)]

    def next_token_probs(self, prompts, continuations, choices):
        self.calls.append(("next_token_probs", tuple(continuations)))
        return [dict(self.dist) for _ in prompts]

    def reply_logprobs(self, prompts, replies):
        self.calls.append(("reply_logprobs", len(prompts)))
        return [self.logprobs(p, r) for p, r in zip(prompts, replies)]


ROWS = [{"id": f"r{i}", "instruction": f"Question {i}?", "response": f"Answer {i}."} for i in range(3)]


def test_greedy_reads_one_reply_at_temperature_zero():
    judge = FakeJudge(replies=lambda p, s: "Fine.\nScore: 5")
    out = score_rows(judge, ROWS, CurateConfig(method="greedy"), seed=0)
    assert [r["score"] for r in out] == [5, 5, 5] and [r["judge_score"] for r in out] == [5, 5, 5]
    assert [c[:2] for c in judge.calls] == [("generate", 0.0)]


def test_mean_of_k_averages_parsed_samples_with_their_own_seeds():
    replies = iter(["Score: 5", "Score: 4", "Score: 91", "no score", "Score: 3", "Score: 2"] * 3)
    judge = FakeJudge(replies=lambda p, s: next(replies))
    out = score_rows(judge, ROWS[:1], CurateConfig(method="mean-of-k", k=6), seed=0)
    assert out[0]["samples"] == [5, 4, None, None, 3, 2] and out[0]["judge_score"] == 3.5
    seeds = [c[2][0] for c in judge.calls]
    assert len(seeds) == 6 and len(set(seeds)) == 6  # k distinct samples, not one repeated
    judge = FakeJudge(replies=lambda p, s: "unparseable")
    assert score_rows(judge, ROWS[:1], CurateConfig(method="mean-of-k", k=3), 0)[0]["score"] is None


def test_expected_score_is_continuous_and_needs_no_reply():
    judge = FakeJudge()
    out = score_rows(judge, ROWS, CurateConfig(method="expected", max_new_tokens=0), seed=0)
    assert [r["score"] for r in out] == [3.5] * 3
    assert [c[0] for c in judge.calls] == ["next_token_probs"]


def test_ifd_is_conditional_over_unconditional_loss_and_prefilters():
    def logprobs(prompt, reply):
        alone = prompt[0]["content"] == ""
        # row r0: the instruction halves the loss (IFD 0.5); r1: it does not help (IFD 1.0); r2: IFD 1.5
        given = {"Question 0?": -1.0, "Question 1?": -2.0, "Question 2?": -3.0}.get(prompt[0]["content"])
        return {"tokens": [-2.0] * 3 if alone else [given] * 3, "end": -0.25}

    judge = FakeJudge(logprobs=logprobs)
    out = score_rows(judge, ROWS, CurateConfig(method="expected", max_new_tokens=0, ifd=True), seed=0)
    assert [r["ifd"] for r in out] == [0.5, 1.0, 1.5] and all(r["end_logprob"] == -0.25 for r in out)
    assert all(r["score"] == 3.5 for r in out)
    judge = FakeJudge(logprobs=logprobs)
    out = score_rows(judge, ROWS, CurateConfig(method="expected", max_new_tokens=0, max_ifd=1.0), seed=0)
    assert [r.get("skipped") for r in out] == [None, "ifd", "ifd"]
    assert [r["score"] for r in out] == [3.5, None, None]
    assert judge.calls[-1] == ("next_token_probs", ("Score:",))  # only the row that passed is judged


def test_combined_score_weights_signals_on_the_rubric_scale():
    assert combined_score({"ifd": 1.0}, {"bias": 0.0, "ifd": 0.0}) == 3.0  # sigmoid(0) = 0.5 -> 3
    assert combined_score(
        {"ifd": 0.5, "end_logprob": -1.0}, {"bias": 1.0, "ifd": -4.0, "end_logprob": 1.0}
    ) == round(1 + 4 / (1 + math.exp(2.0)), 4)
    assert combined_score({"ifd": 0.5, "judge_score": None}, {"ifd": -4.0, "judge_score": 1.0}) is None
    # a combination without the judge never asks it
    judge = FakeJudge()
    out = score_rows(judge, ROWS, CurateConfig(combine={"bias": 2.0, "ifd": -1.0}), seed=0)
    assert all(r["ifd"] == 1.0 and r["score"] == round(1 + 4 / (1 + math.exp(-(2.0 - 1.0))), 4) for r in out)
    assert [c[0] for c in judge.calls] == ["reply_logprobs", "reply_logprobs"]


def test_curate_config_is_checked():
    with pytest.raises(ConfigError, match="combine: unknown signal"):
        load_config(None, ['curate.combine={"ifdd": 1.0}'])
    with pytest.raises(ConfigError, match="max_new_tokens must be at least 1"):
        load_config(None, ["curate.method=greedy", "curate.max_new_tokens=0"])
    with pytest.raises(ConfigError, match="curate.k"):
        load_config(None, ["curate.method=mean-of-k", "curate.k=1"])

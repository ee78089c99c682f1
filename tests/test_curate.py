import pytest

from humback.curate import histogram, parse_score, select

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
    assert histogram([1, 5, 5, None, 3.49, 3.5, 4.2]) == {"1": 1, "2": 0, "3": 1, "4": 2, "5": 2, "unparsed": 1}


def test_select_threshold_order_and_cap():
    cands = [{"id": str(i)} for i in range(5)]
    scored = {"0": {"score": 4.0}, "1": {"score": None}, "2": {"score": 4.6}, "3": {"score": 3.9}, "4": {"score": 5}}
    assert [c["id"] for c in select(cands, scored, 4.0, None)] == ["4", "2", "0"]
    assert [c["id"] for c in select(cands, scored, 4.0, 2)] == ["4", "2"]
    assert select(cands, scored, 5.0, None) == [{"id": "4"}]
    assert [c["id"] for c in select(cands, scored, 1.0, None, top_fraction=0.5)] == ["4", "2"]  # 0.5 of 5 -> 2
    assert [c["id"] for c in select(cands, scored, 1.0, None, top_fraction=0.01)] == ["4"]

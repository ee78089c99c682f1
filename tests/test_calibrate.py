"""`humback calibrate`: negatives built from good pairs, metrics, fitted weights, and the command."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from humback.calibrate import (
    BOILERPLATE,
    build_negatives,
    fit_weights,
    read_pairs,
    roc_auc,
    selection_metrics,
    splice_boilerplate,
    truncate,
)
from humback.records import RecordError

PAIRS = [
    {
        "id": str(i),
        "instruction": f"How do I do task {i}?",
        "response": f"To do task {i}, first prepare.\n\nThen work through step {i} carefully and check it."
        "\n\nDone.",
    }
    for i in range(5)
]


PER_PAIR = ["positive", "mismatch", "truncated", "boilerplate", "copy", "copy", "meta", "stacked", "injected"]


def test_negatives_are_one_of_each_kind_per_pair():
    from humback.gates import gate
    from humback.untrusted import neutralise

    rows = build_negatives(PAIRS, seed=3)
    n = len(PER_PAIR)
    assert len(rows) == 5 * n and [r["kind"] for r in rows[:n]] == PER_PAIR
    assert sum(r["label"] for r in rows) == 5 and len({r["id"] for r in rows}) == 5 * n
    for pair, group in zip(PAIRS, zip(*[iter(rows)] * n)):
        pos, mis, trunc, boiler, copy, repeat, meta, stacked, injected = group
        assert copy["instruction"] == copy["response"] == pair["response"]
        assert (
            repeat["instruction"].startswith("Repeat this text: ") and repeat["response"] == pair["response"]
        )
        assert gate(meta["instruction"], meta["response"]) in (
            "meta",
            "echo",
        )  # one meta wording echoes the prompt
        assert (
            stacked["instruction"].split("\n")[0] == pair["instruction"]
            and len(stacked["instruction"].split("\n")) == 3
        )
        assert len(set(stacked["instruction"].split("\n"))) == 3  # two other pairs' instructions
        assert (
            neutralise(injected["response"]) == (pair["response"], True)
            or neutralise(injected["response"])[1]
        )
        assert all(part in injected["response"] for part in pair["response"].split("\n\n"))
        assert pos["response"] == pair["response"] and {pos["instruction"], mis["instruction"]} == {
            pair["instruction"]
        }
        assert mis["response"] != pair["response"] and mis["response"] in [p["response"] for p in PAIRS]
        assert pair["response"].startswith(trunc["response"]) and len(trunc["response"]) <= 0.3 * len(
            pair["response"]
        )
        assert not trunc["response"].endswith(" ")
        lines = boiler["response"].split("\n")
        assert lines[0] in BOILERPLATE["navigation"] and lines[-1] in BOILERPLATE["share"]
        assert any(c in boiler["response"] for c in BOILERPLATE["cookie"])
        # the original text is all still there, in order, with the boilerplate spliced between paragraphs
        spliced = {line for lines in BOILERPLATE.values() for line in lines}
        kept = [p for p in boiler["response"].split("\n") if p and p not in spliced]
        assert kept == [p for p in pair["response"].split("\n") if p]
    assert build_negatives(PAIRS, seed=3) == rows  # seeded
    with pytest.raises(RecordError, match="at least 2 pairs"):
        build_negatives(PAIRS[:1])


def test_truncate_and_splice_edge_cases():
    assert truncate("abcdefghij") == "abc"  # no space: a plain cut
    assert truncate("one two three four five six seven eight nine ten") == "one two three"
    one_line = splice_boilerplate("A single line answer.", random.Random(0)).split("\n")
    assert one_line[2] == "A single line answer." or one_line[1] == "A single line answer."
    assert len(one_line) == 4


def test_read_pairs_names_the_problem(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"instruction": "a", "output_gpt4": "b"}) + "\n")
    assert read_pairs(f, "output_gpt4") == [{"id": "1", "instruction": "a", "response": "b"}]
    with pytest.raises(RecordError, match=r"d.jsonl:1: missing key\(s\) response"):
        read_pairs(f)
    f.write_text(
        json.dumps({"instruction": "a", "response": "b", "label": 1})
        + "\n"
        + json.dumps({"instruction": "a", "response": "b"})
        + "\n"
    )
    with pytest.raises(RecordError, match="1 of 2 rows have a 'label'"):
        read_pairs(f)
    f.write_text(json.dumps({"instruction": "a", "response": "b", "label": "good"}) + "\n")
    with pytest.raises(RecordError, match="d.jsonl:1: key 'label' must be 0/1"):
        read_pairs(f)


def test_metrics():
    assert roc_auc([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.9, 0.8]) == 0.0
    assert roc_auc([1, 0, 1, 0], [None, 0.5, 0.7, 0.6]) == 0.5  # unscored ranks last
    assert roc_auc([1, 1], [0.1, 0.2]) is None
    assert selection_metrics([1, 1, 0, 0], [True, False, True, False]) == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "selected": 2,
    }


def test_fit_weights_point_the_right_way():
    rng = random.Random(0)
    good = [{"label": 1, "ifd": rng.uniform(0.3, 0.8), "end_logprob": rng.uniform(-2, 0)} for _ in range(40)]
    bad = [{"label": 0, "ifd": rng.uniform(0.7, 1.2), "end_logprob": rng.uniform(-9, -1)} for _ in range(40)]
    w = fit_weights(good + bad + [{"label": 0, "ifd": None, "end_logprob": -1}], ["ifd", "end_logprob"])
    assert set(w) == {"bias", "ifd", "end_logprob"} and w["ifd"] < 0 < w["end_logprob"]
    with pytest.raises(RecordError, match="one class"):
        fit_weights(good, ["ifd"])


def _humback(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "humback.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_calibrate_command_end_to_end(tiny_model, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": p["id"], "instruction": p["instruction"], "answer": p["response"]}) + "\n"
            for p in PAIRS
        )
    )
    args = [
        "calibrate",
        str(data),
        "--judge",
        tiny_model,
        "--response-field",
        "answer",
        "--out-dir",
        "cal",
        "--set",
        "curate.method=expected",
        "--set",
        "curate.max_new_tokens=0",
        "--set",
        "curate.ifd=true",
    ]
    res = _humback(*args, "--fit", "ifd,end_logprob", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert (out["positives"], out["negatives"], out["negatives_built"]) == (5, 40, True)
    assert set(out["signals"]) == {"score", "judge_score", "ifd", "nll", "end_logprob", "overlap"}
    assert set(out["signals"]["ifd"]) == {"auc"} | {f"auc_{k}" for k in set(PER_PAIR) - {"positive"}}
    # Copies, meta and stacked instructions are gated, injected answers skipped: none is selected.
    assert set(out["selected_share"]) == set(PER_PAIR)
    assert all(out["selected_share"][k] == 0 for k in ("copy", "meta", "stacked", "injected"))
    skipped = out["skipped"]
    assert skipped["copy"] == 10 and skipped.get("meta", 0) + skipped.get("echo", 0) == 5
    assert skipped["stacked"] == 5 and skipped["judge_directed"] == 5
    assert out["parse_failure_rate"] == 0.0 and set(out["fit"]["combine"]) == {"bias", "ifd", "end_logprob"}
    assert "ifd" in res.stdout and "fitted weights" in res.stdout
    scored = [json.loads(line) for line in (tmp_path / "cal" / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == 45 and all(
        s["ifd"] > 0 and s["end_logprob"] < 0 for s in scored if not s.get("skipped")
    )
    # a rerun is answered from the cache and gives the same numbers
    again = _humback(*args, "--fit", "ifd,end_logprob", cwd=tmp_path)
    assert again.returncode == 0 and json.loads((tmp_path / "cal" / "calibration.json").read_text()) == out


def test_calibrate_bad_input_is_a_user_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a"}\n')
    res = _humback("calibrate", "bad.jsonl", cwd=tmp_path)
    assert res.returncode == 2 and "bad.jsonl:1: missing key(s) response" in res.stderr
    assert "Traceback" not in res.stderr
    (tmp_path / "empty.jsonl").write_text("")
    res = _humback("calibrate", "empty.jsonl", cwd=tmp_path)
    assert res.returncode == 2 and "holds no rows" in res.stderr
    res = _humback("calibrate", "empty.jsonl", "--fit", "ifd,lenght", cwd=tmp_path)
    assert res.returncode == 2 and "unknown signal(s) lenght" in res.stderr

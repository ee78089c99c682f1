"""Bad input through the real console entry point: one-line error, exit code 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def humback(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "humback.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=300,
    )


def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in proc.stderr, proc.stderr


def test_missing_config_file(tmp_path):
    assert_user_error(humback("run", str(tmp_path / "nope.yaml")), "config file", "not found")


def test_misspelt_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("curate:\n  treshold: 4\n")
    assert_user_error(humback("run", str(cfg)), "curate.treshold: unknown key", "threshold")


def test_bad_set_value(tmp_path):
    proc = humback("run", "--set", "train.lr=fast", "--run-dir", str(tmp_path / "r"))
    assert_user_error(proc, "train.lr")


def test_unknown_model(tmp_path):
    proc = humback("run", "--set", "model=no-such-model", "--run-dir", str(tmp_path / "r"))
    assert_user_error(proc, "unknown model 'no-such-model'", "local checkpoint folder")


def test_empty_corpus(tmp_path):
    corpus = tmp_path / "empty.jsonl"
    corpus.write_text("")
    proc = humback("segment", "--corpus", str(corpus), "--out", str(tmp_path / "s.jsonl"))
    assert_user_error(proc, "no segment", "passed the filters")


def test_missing_seed_source(tmp_path):
    proc = humback("seed", "--source", str(tmp_path / "none.jsonl.gz"), "--out", str(tmp_path / "s.jsonl"))
    assert_user_error(proc, "none.jsonl.gz not found")


def test_status_of_non_run(tmp_path):
    assert_user_error(humback("status", str(tmp_path)), "no manifest.json")


@pytest.mark.parametrize("sub", ["run", "status", "seed", "segment", "train", "augment", "curate"])
def test_every_subcommand_has_help(sub):
    proc = humback(sub, "--help")
    assert proc.returncode == 0 and "usage: humback" in proc.stdout


def test_stage_subcommands_chain(tiny_model, tmp_path):
    """seed -> segment -> augment -> curate on their own files, as a user would without `run`."""
    assert humback("seed", "--out", str(tmp_path / "seed.jsonl")).returncode == 0
    assert humback("segment", "--out", str(tmp_path / "seg.jsonl"), "--max-segments", "3").returncode == 0
    sets = [
        "--set",
        "augment.max_new_tokens=4",
        "--set",
        "curate.method=expected",
        "--set",
        "curate.max_new_tokens=0",
    ]
    proc = humback(
        "augment",
        "--model",
        tiny_model,
        "--segments",
        str(tmp_path / "seg.jsonl"),
        "--out",
        str(tmp_path / "cand.jsonl"),
        *sets,
    )
    assert proc.returncode == 0, proc.stderr
    proc = humback(
        "curate",
        "--judge",
        tiny_model,
        "--candidates",
        str(tmp_path / "cand.jsonl"),
        "--out-dir",
        str(tmp_path / "cur"),
        *sets,
    )
    assert proc.returncode == 0, proc.stderr
    assert "'parse_failures': 0" in proc.stdout
    assert len((tmp_path / "cur" / "scored.jsonl").read_text().splitlines()) == 3


def test_subcommand_flags_are_validated(tmp_path):
    proc = humback("seed", "--out", str(tmp_path / "s.jsonl"), "--max-pairs", "0")
    assert_user_error(proc, "seed.max_pairs", "greater than or equal to 1")


def test_strict_segment_names_the_bad_line(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "fine"}\n{not json\n')
    proc = humback("segment", "--corpus", str(corpus), "--out", str(tmp_path / "s.jsonl"), "--strict")
    assert_user_error(proc, "c.jsonl:2: not valid JSON")

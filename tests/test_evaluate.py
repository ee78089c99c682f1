"""`humback eval`, `report` and `export` on a finished tiny run: every metric, the report's sections and
real PNG plots, AlpacaEval-format answers, the exported dataset and its card."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from humback.config import load_config
from humback.evaluate import length_controlled, parse_verdict, preferences, win_rates
from humback.export import ExportError, export
from humback.pipeline import run_pipeline
from humback.report import SECTIONS, report
from humback.status import short_number
from humback.templates import forward_messages

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tmp_path_factory):
    from test_pipeline import tiny_overrides

    run_dir = tmp_path_factory.mktemp("evalrun") / "demo"
    cfg = load_config(None, tiny_overrides(tiny_model, segments=4) + ["curate.ifd=true"])
    run_pipeline(cfg, run_dir, log=lambda _: None)
    heldout = run_dir.parent / "heldout.jsonl"
    heldout.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"h{i}",
                    "instruction": f"How do I fix problem {i}?",
                    "output_gpt4": f"Check part {i}, then replace it.\n\nTest it again.",
                }
            )
            + "\n"
            for i in range(5)
        )
    )
    return run_dir, heldout


def _humback(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "humback.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=900,
        check=False,
    )


def test_eval_writes_every_metric_answers_and_the_report(tiny_run):
    run_dir, heldout = tiny_run
    res = _humback(
        "eval",
        str(run_dir),
        "--heldout",
        str(heldout),
        "--response-field",
        "output_gpt4",
        "--nll-pairs",
        "4",
        "--answer-pairs",
        "4",
        "--calibration-pairs",
        "3",
        "--max-new-tokens",
        "6",
    )
    assert res.returncode == 0, res.stderr
    m = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert set(m["backward"]) == {"base", "myx"}
    for entry in m["backward"].values():
        assert entry["instruction_nll"] > 0 and 0 <= entry["rouge_l"] <= 1
    assert set(m["forward"]) == {"base", "m0", "m1", "m2"} and all(
        v["reference_nll"] > 0 for v in m["forward"].values()
    )
    assert set(m["win_rates"]["pairs"]) == {"m1 vs m0", "m2 vs m1", "m0 vs base", "m2 vs m0"}
    for wr in m["win_rates"]["pairs"].values():
        assert wr["n"] == 4 and 0 <= wr["win_rate"] <= 1
    assert set(m["judges"]) == {"iter1", "iter2"}
    assert m["judges"]["iter1"]["signals"]["ifd"]["auc"] is not None
    answers = json.loads((run_dir / "eval" / "answers" / "m2.json").read_text())
    assert len(answers) == 4 and set(answers[0]) == {"instruction", "output", "generator", "dataset"}
    assert (
        answers[0]["instruction"] == "How do I fix problem 0?"
        and answers[0]["generator"] == "humback-demo-m2"
    )
    # the report: every section, the eval tables, and the plots are real PNG images
    text = (run_dir / "report" / "report.md").read_text()
    assert all(f"## {s}" in text for s in SECTIONS) and "m2 vs m0" in text and "not evaluated" not in text
    images = [line.split("(")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert set(images) == {"funnel.png", "scores.png", "lengths.png", "loss.png"}
    from PIL import Image

    for name in images:
        path = run_dir / "report" / name
        assert path.read_bytes()[:8] == PNG
        with Image.open(path) as im:
            assert im.size[0] > 300 and im.size[1] > 100


def test_eval_needs_heldout_data_and_a_run(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    res = _humback("eval", str(run_dir))
    assert res.returncode == 2 and "--heldout" in res.stderr and "Traceback" not in res.stderr
    res = _humback("eval", str(tmp_path), "--heldout", "x.jsonl")
    assert res.returncode == 2 and "config.yaml" in res.stderr


def test_report_before_eval_says_so(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("eval", "report", "cache"))
    text = report(copy).read_text()
    assert all(f"## {s}" in text for s in SECTIONS) and "not evaluated yet" in text
    assert "(no plan: `humback plan CONFIG" in text


def test_report_puts_the_plan_beside_what_ran(tiny_run, tmp_path):
    """The plan's figures and the run's, per stage: rows from the stats, tokens from the engines' meter."""
    import shutil

    from humback.config import load_config
    from humback.plan import plan

    run_dir, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("eval", "report"))
    cfg = load_config(copy / "config.yaml")
    (copy / "plan.json").write_text(json.dumps(plan(cfg, log=lambda _: None)))
    text = report(copy).read_text().split("## Plan vs actual")[1]
    manifest = json.loads((copy / "manifest.json").read_text())
    augment = manifest["stages"]["augment"]
    row = next(line for line in text.splitlines() if line.startswith("| augment |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].split(" / ")[1] == str(augment["stats"]["rows"])
    assert cells[2].split(" / ")[1] == short_number(augment["spent"]["prompt_tokens"])
    assert "| train:m1 |" in text and "plan / actual" in text


def test_html_report_is_one_self_contained_page_with_escaped_rows(tiny_run, tmp_path):
    """report/index.html opens from disk with nothing to fetch: plots inline, no script, run text escaped."""
    import re
    import shutil

    run_dir, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("eval", "report", "cache"))
    rows = [json.loads(line) for line in (copy / "candidates.jsonl").read_text().splitlines()]
    hostile = '<script>alert(1)</script><img src="http://evil.example/x.png" onerror="alert(2)">'
    rows[0]["response"] = hostile  # a segment is untrusted web text
    (copy / "candidates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report(copy)
    page = (copy / "report" / "index.html").read_text()
    assert "data:image/png;base64," in page and "<script" not in page
    assert all(url.startswith("data:") for url in re.findall(r'(?:src|href)="([^"]*)"', page))
    assert "default-src 'none'" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_messages_and_card(tiny_run, tmp_path, fmt):
    run_dir, _ = tiny_run
    out = export(run_dir, tmp_path / "ds", fmt=fmt, license="cc-by-4.0")
    assert out["iteration"] == 2
    selected = [json.loads(line) for line in (run_dir / "iter2" / "selected.jsonl").read_text().splitlines()]
    if fmt == "jsonl":
        rows = [
            json.loads(line) for line in (tmp_path / "ds" / "data" / "train.jsonl").read_text().splitlines()
        ]
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(tmp_path / "ds" / "data" / "train.parquet").to_pylist()
    assert len(rows) == len(selected) == out["rows"]
    assert rows[0]["messages"] == [
        {"role": "user", "content": selected[0]["instruction"]},
        {"role": "assistant", "content": selected[0]["response"]},
    ]
    assert rows[0]["source"]["url"] and rows[0]["score"] == selected[0]["score"]
    card = (tmp_path / "ds" / "README.md").read_text()
    import yaml

    meta = yaml.safe_load(card.split("---")[1])
    assert (
        meta["license"] == "cc-by-4.0" and meta["configs"][0]["data_files"][0]["path"] == f"data/train.{fmt}"
    )
    assert f"selected in iteration 2: {len(selected)}" in card and "## Sources" in card


def test_push_to_hub_uploads_the_folder(tiny_run, tmp_path, monkeypatch):
    """No hub here: the upload goes to a stand-in HfApi that records what it was asked."""
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo, **kw):
            calls.append(("create", repo, kw))

        def upload_folder(self, **kw):
            calls.append(("upload", kw))
            return type("Info", (), {"commit_url": "https://hub.example/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    out = export(tiny_run[0], tmp_path / "ds", push_to_hub="me/humback-demo")
    assert out["url"] == "https://hub.example/commit/1"
    assert calls[0] == (
        "create",
        "me/humback-demo",
        {"repo_type": "dataset", "private": True, "exist_ok": True},
    )
    assert calls[1][1]["folder_path"] == str(tmp_path / "ds") and calls[1][1]["repo_type"] == "dataset"


def test_export_and_report_errors(tmp_path):
    res = _humback("export", str(tmp_path), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "no manifest.json" in res.stderr
    res = _humback("report", str(tmp_path))
    assert res.returncode == 2 and "no manifest.json" in res.stderr


class BiasedJudge:
    """Prefers whatever comes first with probability 0.9: asking both orders must cancel it."""

    model, fingerprint, chunk_size, backend = "biased", "biased:0", 8, "fake"

    def next_token_probs(self, prompts, continuations, choices):
        return [{" A": 0.9, " B": 0.1} for _ in prompts]

    def generate(self, prompts, params, seeds=None):
        return ["A" for _ in prompts]


def test_both_orders_cancel_position_bias():
    inst, a, b = ["q1", "q2"], ["x", "y"], ["z", "w"]
    assert preferences(BiasedJudge(), inst, a, b) == [0.5, 0.5]
    assert preferences(BiasedJudge(), inst, a, b, method="sample") == [0.5, 0.5]


def test_length_controlled_win_rate_removes_a_pure_length_preference():
    rng = random.Random(0)
    diffs = [rng.choice([-1, 1]) * rng.randint(50, 500) for _ in range(200)]
    first = ["x" * (600 + d) for d in diffs]
    second = ["x" * 600 for _ in diffs]
    prefs = [0.9 if d > 0 else 0.1 for d in diffs]  # the judge only likes length
    out = win_rates(prefs, first, second)
    assert abs(out["win_rate"] - (0.1 + 0.8 * sum(d > 0 for d in diffs) / 200)) < 1e-3
    assert abs(out["lc_win_rate"] - 0.5) < 0.05
    # a real quality edge survives length control
    prefs = [0.95 if d > 0 else 0.7 for d in diffs]
    assert length_controlled(prefs, diffs) > 0.75
    assert win_rates([None, None], ["a", "b"], ["c", "d"])["win_rate"] is None


@pytest.mark.parametrize(
    "text,expected",
    [
        ("A", 1.0),
        ("B", 0.0),
        ("Answer B is better.", 0.0),
        ("**A**", 1.0),
        ("A or B", None),
        ("", None),
        ("Neither", None),
    ],
)
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


def test_answers_use_both_system_tags():
    msgs = forward_messages("Hi?", "inference")
    assert (
        msgs[0]["role"] == "system"
        and "AI Assistant" in msgs[0]["content"]
        and "web search" in msgs[0]["content"]
    )


def test_lm_eval_without_the_extra_is_a_clear_error(monkeypatch):
    import builtins

    from humback.evaluate import EvalError, run_lm_eval

    real_import = builtins.__import__

    def no_lm_eval(name, *args, **kw):
        if name == "lm_eval":
            raise ImportError(name)
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_lm_eval)
    with pytest.raises(EvalError, match=r"humback\[lm-eval\]"):
        run_lm_eval("some/model", ["hellaswag"])


def test_export_writes_only_into_its_own_folder_and_uploads_only_its_files(tiny_run, tmp_path, monkeypatch):
    import huggingface_hub

    out = tmp_path / "ds"
    out.mkdir()
    (out / ".env").write_text("HF_TOKEN=secret")
    with pytest.raises(ExportError, match=r"holds other files \(.env\)"):
        export(tiny_run[0], out)
    with pytest.raises(ExportError, match=r"unknown export format 'csv' \(accepted: jsonl, parquet\)"):
        export(tiny_run[0], tmp_path / "other", fmt="csv")
    assert not (tmp_path / "other").exists()
    (out / ".env").unlink()
    calls = []

    class FakeApi:
        def create_repo(self, repo, **kw):
            calls.append(kw)

        def upload_folder(self, **kw):
            calls.append(kw)
            return type("Info", (), {"commit_url": "https://hub.example/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    export(tiny_run[0], out, push_to_hub="me/data")
    assert calls[1]["allow_patterns"] == ["data/train.jsonl", "README.md"]
    export(tiny_run[0], out)  # an earlier export's folder is fine

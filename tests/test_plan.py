"""`humback plan`: estimates against a real run's counts, sample scaling, the time sources, prices, and
the errors that say what is accepted."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from humback.config import ConfigError, load_config
from humback.hardware import HARDWARE, HardwareError, generation_seconds, training_seconds
from humback.plan import PlanError, plan, share_interval
from humback.status import status_table
from test_pipeline import tiny_overrides

ROOT = Path(__file__).resolve().parent.parent


def tiny(model: str, *more: str):
    return load_config(None, tiny_overrides(model) + ["iterations=1", *more])


@pytest.fixture(scope="module")
def planned_and_run(tiny_model, tmp_path_factory):
    from humback.pipeline import run_pipeline

    cfg = tiny(tiny_model)
    run_dir = tmp_path_factory.mktemp("plan") / "run"
    return plan(cfg, log=lambda _: None), run_pipeline(cfg, run_dir, log=lambda _: None), run_dir


def test_rows_and_tokens_against_the_real_run(planned_and_run):
    got, manifest, _ = planned_and_run
    stats = {k: v["stats"] for k, v in manifest["stages"].items()}
    for key in ("seed", "segment", "augment", "curate:1"):
        assert got["stages"][key]["rows"] == stats[key]["rows"], key
    for key in ("train:myx", "train:m0"):  # seed pairs only: the counts are exact
        assert got["stages"][key]["rows"] == stats[key]["examples"]
        assert got["stages"][key]["train_tokens"] == pytest.approx(stats[key]["tokens_seen"], rel=0.10), key
    # Without --measure the tiny judge's selection is unknown below threshold 4: every candidate, as said.
    assert got["stages"]["curate:1"]["selected"] >= stats["curate:1"]["selected"]
    assert "upper bound" in got["stages"]["curate:1"]["selected_basis"]
    assert got["stages"]["augment"]["generated_tokens"]["max"] == 6 * 8  # rows x augment.max_new_tokens
    # What the engine was metered reading (manifest `spent`) is what the plan counted.
    spent = manifest["stages"]["augment"]["spent"]
    assert spent["prompt_tokens"] == pytest.approx(got["stages"]["augment"]["prompt_tokens"], rel=0.02)
    assert spent["requests"] == spent["rows"] == 6
    # Curation reads what the plan counts per judged row (the gates' skips aside: none are assumed).
    curated, scored = manifest["stages"]["curate:1"]["spent"], got["stages"]["curate:1"]
    judged = stats["curate:1"]["rows"] - sum(stats["curate:1"]["skipped"].values())
    per_row = scored["prompt_tokens"] / scored["rows"]
    assert curated["prompt_tokens"] / judged == pytest.approx(per_row, rel=0.15)


def test_status_shows_the_plan_before_and_beside_the_run(planned_and_run, tmp_path):
    got, _, run_dir = planned_and_run
    (run_dir / "plan.json").write_text(json.dumps(got))
    beside = status_table(run_dir)
    assert "plan / actual" in beside and "train:m0" in beside.split("plan / actual")[1]
    only = tmp_path / "planned"
    only.mkdir()
    (only / "plan.json").write_text(json.dumps(got))
    assert status_table(only).startswith("humback plan")


def test_a_sample_is_scaled_to_the_source(tiny_model, tmp_path):
    seed = tmp_path / "pairs.jsonl"
    seed.write_text(
        "".join(
            json.dumps({"instruction": f"Question {i}?", "response": f"Answer {i}. " * 20}) + "\n"
            for i in range(300)
        )
    )
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
        "mu",
    ]
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"text": " ".join(words[(i + j) % 12] + str(i * 31 + j) for j in range(150)) + "."})
            + "\n"
            for i in range(120)
        )
    )
    cfg = tiny(
        tiny_model,
        f"seed.source={seed}",
        f"segment.corpus={corpus}",
        "segment.max_segments=null",
        "segment.lang=null",
        "segment.min_chars=100",
    )
    got = plan(cfg, rows=40, log=lambda _: None)
    assert got["inputs"]["seed"] == {**got["inputs"]["seed"], "rows": 300, "how": "counted", "pairs": 300}
    corpus_in = got["inputs"]["corpus"]
    assert (corpus_in["documents"], corpus_in["how"], corpus_in["sample_documents"]) == (120, "counted", 40)
    from humback.data.segment import segment

    real = segment(corpus, tmp_path / "segments.jsonl", cfg.segment)
    assert corpus_in["segments"] == pytest.approx(real["rows"], rel=0.10)


def test_prices_give_money_and_a_missing_price_names_the_keys(tiny_model):
    judge = ["generation.judge.backend=openai", "generation.judge.model=served", "curate.method=sample"]
    with pytest.raises(
        ConfigError, match=r"generation\.judge\.price_input and generation\.judge\.price_output"
    ):
        plan(tiny(tiny_model, *judge), log=lambda _: None)
    priced = judge + [
        "generation.judge.price_input=2.5",
        "generation.judge.price_output=10",
        "generation.judge.latency_s=4",
        "generation.judge.concurrency=2",
    ]
    got = plan(tiny(tiny_model, *priced), log=lambda _: None)["stages"]["curate:1"]
    expected = (got["prompt_tokens"] * 2.5 + got["generated_tokens"]["expected"] * 10) / 1e6
    assert got["cost_usd"]["expected"] == round(expected, 2)
    assert got["seconds"]["api"] == got["rows"] * 4 / 2


def test_hardware_arithmetic_and_unknown_names():
    with pytest.raises(HardwareError, match="accepted: h100x1, h100x8"):
        generation_seconds("tpu9000", 1e9, 2e9, 1, 1, 1)
    # 7B on 8 H100s, one replica each: prefill 1e6 tokens = 1e6 x 2 x 7e9 / (8 x 989.4e12 x 0.5).
    got = generation_seconds("h100x8", 7e9, 14e9, 1e6, 0, 1)
    assert got["seconds"] == round(1e6 * 2 * 7e9 / (8 * 989.4e12 * 0.5), 1)
    # A decode step reads 14 GB at 0.7 x 3.35 TB/s (6.0 ms), but 256 sequences of a 7B model need 7.2 ms of
    # compute at half the peak: the step is compute-bound, and the slower of the two counts.
    step = max(14e9 / (3350e9 * 0.7), 256 * 2 * 7e9 / (989.4e12 * 0.5))
    assert step > 14e9 / (3350e9 * 0.7)
    assert generation_seconds("h100x8", 7e9, 14e9, 0, 1e6, 1)["seconds"] == round(1e6 / (8 * 256 / step), 1)
    assert training_seconds("a100x8", 7e9, 1e6, lora=False)["seconds"] == round(
        1e6 * 6 * 7e9 / (8 * 312e12 * 0.35), 1
    )


def test_docs_list_every_accelerator_with_its_figures():
    text = (ROOT / "docs" / "plan.md").read_text()
    for name, (acc, count) in HARDWARE.items():
        row = f"| {name} | {acc.name} | {count} | {acc.bf16_tflops} | {acc.bandwidth_gbs} | {acc.memory_gb} |"
        assert row in text, row


def test_measure_times_every_stage_here(tiny_model):
    cfg = tiny(
        tiny_model, "generation.backend=transformers", "rewrite.enabled=true", "rewrite.max_new_tokens=8"
    )
    got = plan(cfg, measure=True, log=lambda _: None)
    assert all("measured" in st["seconds"] for st in got["stages"].values()), got["stages"]
    assert "measured" in got["stages"]["rewrite:1"]["expected_basis"]
    assert "measured" in got["stages"]["curate:1"]["expected_basis"]
    assert "M_yx's stand-in" in got["stages"]["augment"]["expected_basis"]
    assert got["stages"]["curate:1"]["selected_basis"].startswith("the sample's share")
    assert got["totals"]["seconds"]["measured"] > 0
    sample = got["sample_run"]  # what the stand-ins did is in plan.json, to check the plan against
    assert sample["train"]["steps"] == 2 and 0 <= sample["curate"]["skipped_share"] <= 1
    assert got["stages"]["curate:1"]["skipped"] == round(6 * sample["curate"]["skipped_share"])
    assert "95 % interval" in got["stages"]["curate:1"]["selected_basis"]
    # The judge's tokens per row are the meter's on the sample (M_yx's stand-in's instructions, every pass).
    judged = got["stages"]["curate:1"]
    per_row = judged["prompt_tokens"] / (judged["rows"] - judged["skipped"])
    assert per_row == pytest.approx(sample["curate"]["prompt_tokens"], rel=0.15)
    assert sample["rewrite"]["prompt_tokens"] > 0 and sample["augment"]["new_tokens"] > 0


def test_a_measured_share_comes_with_its_interval():
    assert share_interval(5, 48) == pytest.approx((0.0453, 0.2217), abs=1e-3)  # Wilson, worked by hand
    low, high = share_interval(0, 48)
    assert low == 0 and high == pytest.approx(0.0741, abs=1e-3)
    assert share_interval(48, 48)[1] == pytest.approx(1)


def test_rewrites_selected_again_are_planned_as_cache_hits(tiny_model):
    more = ["iterations=2", "rewrite.enabled=true", "curate.max_selected=3"]
    got = plan(tiny(tiny_model, *more), log=lambda _: None)["stages"]
    first, second = got["rewrite:1"], got["rewrite:2"]
    assert (first["rows"], first["cache_hits"], second["rows"], second["cache_hits"]) == (3, 0, 3, 3)
    assert second["prompt_tokens"] == 0 and first["prompt_tokens"] > 0  # the cache answers: nothing spent
    uncached = plan(tiny(tiny_model, *more, "generation.cache=false"), log=lambda _: None)["stages"]
    assert uncached["rewrite:2"]["cache_hits"] == 0
    assert uncached["rewrite:2"]["prompt_tokens"] == first["prompt_tokens"]


def test_the_command_writes_plan_json_and_never_replaces_a_file_it_did_not_write(tiny_model, tmp_path):
    def humback(*args):
        return subprocess.run(
            [sys.executable, "-m", "humback.cli", "plan", *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )

    sets = [a for o in tiny_overrides(tiny_model) for a in ("--set", o)]
    done = humback(*sets, "--run-dir", str(tmp_path / "run"), "--hardware", "a100x1")
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert "hardware" in saved["totals"]["seconds"] and re.search(r"train:m2 .* \(hardware\)", done.stdout)
    mine = tmp_path / "notes.json"
    mine.write_text('{"mine": true}')
    refused = humback(*sets, "--out", str(mine))
    assert refused.returncode == 2 and "not a plan humback wrote" in refused.stderr
    assert mine.read_text() == '{"mine": true}'
    unknown = humback(*sets, "--hardware", "tpu9000", "--out", str(tmp_path / "p.json"))
    assert unknown.returncode == 2 and "accepted: h100x1" in unknown.stderr
    assert "Traceback" not in unknown.stderr and not (tmp_path / "p.json").exists()


def test_a_sample_with_nothing_to_plan_from_says_so(tiny_model, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "too short"}) + "\n")
    with pytest.raises(PlanError, match="0 segments: nothing to plan from"):
        plan(tiny(tiny_model, f"segment.corpus={empty}"), log=lambda _: None)

"""The whole loop end to end on a tiny random model: every artefact, skip on rerun, resume after kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from humback.config import load_config
from humback.pipeline import StageError, run_pipeline
from humback.records import read_jsonl
from humback.status import status_table

STAGES = [
    "seed",
    "segment",
    "train:myx",
    "augment",
    "train:m0",
    "curate:1",
    "train:m1",
    "curate:2",
    "train:m2",
]


def tiny_overrides(model: str, segments: int = 6) -> list[str]:
    return [
        f"model={model}",
        f"segment.max_segments={segments}",
        "train.max_steps=2",
        "train.batch_size=4",
        "train.micro_batch_size=4",
        "train.max_length=1536",
        "train.lr=1e-3",
        "augment.max_new_tokens=8",
        "curate.method=expected",
        "curate.max_new_tokens=4",
        "curate.threshold=1.0",
        "generation.batch_size=4",
    ]


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "demo"
    cfg = load_config(None, tiny_overrides(tiny_model))
    logs: list[str] = []
    data = run_pipeline(cfg, run_dir, log=logs.append)
    return cfg, run_dir, data, logs


def test_every_stage_and_artefact(finished_run):
    _cfg, run_dir, data, _logs = finished_run
    assert list(data["stages"]) == STAGES
    assert all(st["status"] == "done" for st in data["stages"].values())
    for name in ["myx", "m0", "m1", "m2"]:
        model = run_dir / "models" / name
        assert (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file()
        train_log = json.loads((model / "humback_train.json").read_text())
        assert len(train_log["loss_curve"]) == 2
    seg_ids = [r["id"] for r in read_jsonl(run_dir / "segments.jsonl")]
    cand = list(read_jsonl(run_dir / "candidates.jsonl"))
    assert [c["id"] for c in cand] == seg_ids and len(seg_ids) == 6
    for t in (1, 2):
        scored = list(read_jsonl(run_dir / f"iter{t}" / "scored.jsonl"))
        assert [s["id"] for s in scored] == seg_ids
        assert all(s["score"] is None or 1 <= s["score"] <= 5 for s in scored)
        assert all(s["iteration"] == t for s in scored)
        selected = list(read_jsonl(run_dir / f"iter{t}" / "selected.jsonl"))
        assert selected and all(s["tag"] == "augmented" for s in selected)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["train:m1"]["stats"]["examples"] == 46 + len(
        list(read_jsonl(run_dir / "iter1" / "selected.jsonl"))
    )
    assert manifest["stages"]["augment"]["output_files"]["candidates"]["sha256"]
    assert manifest["stages"]["seed"]["versions"]["transformers"].startswith("5.")
    # Every stage's stats are what humback/stats.py declares (the agreement report and export read).
    from humback.stats import stats_problem

    assert [stats_problem(k, e["stats"]) for k, e in manifest["stages"].items()] == [None] * len(
        manifest["stages"]
    )
    assert stats_problem("curate:1", {**manifest["stages"]["curate:1"]["stats"], "new_key": 1})
    assert (run_dir / "config.yaml").is_file()
    table = status_table(run_dir)
    assert "curate:2" in table and "curated dataset:" in table


def test_rerun_skips_everything(finished_run):
    cfg, run_dir, _, _ = finished_run
    logs: list[str] = []
    start = time.time()
    run_pipeline(cfg, run_dir, log=logs.append)
    assert time.time() - start < 10
    assert [line for line in logs if line.startswith("[")] == [
        f"[{k}] skipped: done with the same fingerprint" for k in STAGES
    ]


def test_changed_setting_reruns_from_that_stage(finished_run):
    cfg, run_dir, _, _ = finished_run
    logs: list[str] = []
    cfg2 = load_config(None, tiny_overrides(cfg.model) + ["curate.threshold=1.5"])
    scored_before = (run_dir / "iter1" / "scored.jsonl").read_text()
    run_pipeline(cfg2, run_dir, log=logs.append)
    ran = [line.split("]")[0][1:] for line in logs if line.endswith("running")]
    assert ran == ["curate:1", "train:m1", "curate:2", "train:m2"]
    # The judge M0 did not change: every judge request is answered by the response cache.
    stats = json.loads((run_dir / "manifest.json").read_text())["stages"]["curate:1"]["stats"]
    assert (
        stats["cache_misses"] == 0 and stats["cache_hits"] > 0 and stats["backend"] == "openvino"
    )  # auto on a CPU
    assert (run_dir / "iter1" / "scored.jsonl").read_text() == scored_before


def test_force_reruns_the_stage_and_its_dependents_only(finished_run):
    cfg, run_dir, _, _ = finished_run
    cfg2 = load_config(
        None, tiny_overrides(cfg.model) + ["curate.threshold=1.5"]
    )  # as the test above left it
    logs: list[str] = []
    candidates_before = (run_dir / "candidates.jsonl").read_text()
    run_pipeline(cfg2, run_dir, force="augment", log=logs.append)
    ran = [line.split("]")[0][1:] for line in logs if line.endswith("running")]
    assert ran == ["augment", "curate:1", "train:m1", "curate:2", "train:m2"]  # not seed, segment, myx or m0
    stats = json.loads((run_dir / "manifest.json").read_text())["stages"]["augment"]["stats"]
    assert (stats["cache_hits"], stats["cache_misses"]) == (6, 0)  # forced, yet nothing regenerated
    assert (run_dir / "candidates.jsonl").read_text() == candidates_before


def test_force_unknown_stage(finished_run):
    cfg, run_dir, _, _ = finished_run
    with pytest.raises(StageError, match="no such stage"):
        run_pipeline(cfg, run_dir, force="nope", log=lambda s: None)


def _wait_for_rows(path: Path, n: int, proc, timeout: float = 240) -> bool:
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= n:
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize(
    "stage,partial", [("augment", "candidates.jsonl.partial"), ("curate", "iter1/scored.jsonl.partial")]
)
def test_kill_9_then_rerun_loses_and_repeats_nothing(tiny_model, tmp_path, stage, partial):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(tiny_model, segments=12) + ["generation.batch_size=1", "iterations=1"]
    if stage == "augment":
        overrides.append("augment.max_new_tokens=48")  # slow enough per row to land the kill mid-stage
    else:
        overrides.append("curate.max_new_tokens=48")
    cmd = [sys.executable, "-m", "humback.cli", "run", "--run-dir", str(run_dir)]
    for o in overrides:
        cmd += ["--set", o]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        hit = _wait_for_rows(run_dir / partial, 2, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert hit, f"the run ended before {partial} had rows: nothing was killed mid-stage"
    final = run_dir / partial.removesuffix(".partial")
    assert not final.exists()
    cfg = load_config(None, overrides)
    run_pipeline(cfg, run_dir, log=lambda s: None)
    seg_ids = [r["id"] for r in read_jsonl(run_dir / "segments.jsonl")]
    assert [r["id"] for r in read_jsonl(final)] == seg_ids  # each segment once, in order
    assert not (run_dir / partial).exists()


def test_status_shows_pending_and_running_stages():
    from humback.status import summary

    data = {
        "name": "x",
        "run_dir": "runs/x",
        "config": {"iterations": 1},
        "stages": {
            "seed": {
                "status": "done",
                "seconds": 0.1,
                "stats": {"rows": 46, "drops": {"language": 4}},
                "outputs": {"seed": "runs/x/seed.jsonl"},
            },
            "segment": {"status": "running"},
        },
    }
    table = summary(data)
    lines = {line.split()[0]: line for line in table.splitlines()[2:] if line.strip()}
    assert "46" in lines["seed"] and "{'language': 4}" in lines["seed"]
    assert lines["segment"].split()[1] == "running"
    assert [k for k, line in lines.items() if line.split()[1:2] == ["pending"]] == [
        "train:myx",
        "augment",
        "train:m0",
        "curate:1",
        "train:m1",
    ]


def test_external_judge_and_backward_models_cut_the_dependencies(tiny_model, tmp_path):
    """A judge named in the config replaces M_{t-1}: curation then waits only for augmentation, and its
    fingerprint follows the judge's settings."""
    from humback.pipeline import build_stages

    base = tiny_overrides(tiny_model)
    own = {s.key: s for s in build_stages(load_config(None, base), tmp_path, print)}
    ext_cfg = load_config(
        None,
        base
        + [
            "generation.judge.backend=openai",
            "generation.judge.model=judge-70b",
            "generation.judge.base_url=http://127.0.0.1:9/v1",
            f"generation.backward.model={tiny_model}",
        ],
    )
    ext = {s.key: s for s in build_stages(ext_cfg, tmp_path, print)}
    assert set(own["curate:2"].deps) == {"augment", "train:m1"} and ext["curate:2"].deps == ("augment",)
    assert ext["curate:1"].inputs["judge"] == "judge-70b" and ext["augment"].deps == ("segment",)
    assert ext["curate:1"].fp != own["curate:1"].fp
    other = load_config(
        None,
        base
        + [
            "generation.judge.backend=openai",
            "generation.judge.model=judge-8b",
            "generation.judge.base_url=http://127.0.0.1:9/v1",
            f"generation.backward.model={tiny_model}",
        ],
    )
    assert {s.key: s for s in build_stages(other, tmp_path, print)}["curate:1"].fp != ext["curate:1"].fp

"""The generating stages on a Ray cluster (cluster.engine: ray): a local Ray instance started here, the
tiny model in CPU replicas. Same rows as the local engine, kill-safe at the driver and at a replica, and
clear errors when Ray is missing, the cluster is unreachable or a replica cannot load its model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="pip install 'humback[ray]' to run the Ray tests")

from humback.augment import augment
from humback.cluster import ClusterError, connect
from humback.config import AugmentConfig, ClusterConfig, ConfigError, CurateConfig, EngineConfig, load_config
from humback.curate import curate
from humback.generation import load_generator
from humback.models import ModelError
from humback.ray_runner import RayRunner
from humback.records import read_jsonl
from humback.runners import file_map, runner_for

CANDIDATES = [
    {
        "id": f"c{i}",
        "instruction": f"How do I bake loaf number {i}?",
        "response": f"Mix flour, water and salt. Knead for {i + 5} minutes, proof overnight, bake hot.",
    }
    for i in range(12)
]


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module (start-up ~5 s), stopped at the end."""
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    yield ClusterConfig(engine="ray", replicas=2, shard_rows=3)
    ray.shutdown()


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_ray_scores_the_rows_the_local_engine_scores(cluster, tiny_model, tmp_path):
    """Greedy signals (expected score, IFD) do not depend on batching: the same numbers either way."""
    cands = write(tmp_path / "candidates.jsonl", CANDIDATES)
    cfg = CurateConfig(method="expected", max_new_tokens=0, ifd=True, threshold=1.0)
    engine = EngineConfig(backend="transformers", device="cpu", batch_size=2)
    local = curate(cands, runner_for(engine, tiny_model, None), tmp_path / "local", cfg)
    on_ray = curate(cands, runner_for(engine, tiny_model, None, cluster), tmp_path / "ray", cfg)
    a, b = (list(read_jsonl(tmp_path / d / "scored.jsonl")) for d in ("local", "ray"))
    assert [r["id"] for r in a] == [r["id"] for r in b] == [c["id"] for c in CANDIDATES]
    for x, y in zip(a, b):
        assert x["judge_score"] == pytest.approx(y["judge_score"], abs=1e-5) and x["ifd"] == pytest.approx(
            y["ifd"], abs=1e-5
        )
    assert (tmp_path / "local" / "selected.jsonl").read_text() == (
        tmp_path / "ray" / "selected.jsonl"
    ).read_text()
    assert on_ray["backend"] == "transformers" and on_ray["rows"] == local["rows"] == 12
    assert len(list((tmp_path / "ray" / "scored.jsonl.shards").glob("*.jsonl"))) == 4  # 12 rows / 3 per shard


def test_a_changed_selection_setting_costs_no_generation(cluster, tiny_model, tmp_path):
    cands = write(tmp_path / "candidates.jsonl", CANDIDATES)
    gen = RayRunner(EngineConfig(backend="transformers", device="cpu"), tiny_model, cluster)
    curate(cands, gen, tmp_path / "out", CurateConfig(method="expected", max_new_tokens=0, threshold=1.0))
    shards = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "scored.jsonl.shards").glob("0*.jsonl")}
    stats = curate(
        cands, gen, tmp_path / "out", CurateConfig(method="expected", max_new_tokens=0, threshold=5.0)
    )
    assert stats["resumed_rows"] == 12 and stats["selected"] <= 12
    assert {p: p.stat().st_mtime_ns for p in shards} == shards  # read, not recomputed


def worker_pids(name: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if name in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_a_killed_replica_is_retried_and_every_row_comes_once(cluster, tiny_model, tmp_path):
    segments = write(
        tmp_path / "segments.jsonl", [{"id": f"s{i}", "text": f"Dough {i} rests. " * 20} for i in range(40)]
    )
    out = tmp_path / "candidates.jsonl"
    killed: list[int] = []

    def kill_one_replica():
        shards = out.with_name(out.name + ".shards")
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            if shards.is_dir() and any(shards.glob("0*.jsonl")):
                for pid in worker_pids("MapWorker"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    break
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_one_replica)
    watcher.start()
    cfg = load_config(None, ["augment.max_new_tokens=48", "augment.temperature=0"])
    gen = RayRunner(
        EngineConfig(backend="transformers", device="cpu"),
        tiny_model,
        cluster.model_copy(update={"shard_rows": 1}),
    )
    stats = augment(segments, gen, out, cfg.augment)
    watcher.join()
    assert killed, "no replica process was found to kill"
    assert [r["id"] for r in read_jsonl(out)] == [f"s{i}" for i in range(40)] and stats["rows"] == 40


def humback(*args: str, timeout: float = 300) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "humback.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def test_kill_9_of_the_driver_then_rerun_recomputes_only_missing_shards(tiny_model, tmp_path):
    segments = write(
        tmp_path / "segments.jsonl", [{"id": f"s{i}", "text": f"Crust {i} browns. " * 20} for i in range(120)]
    )
    out = tmp_path / "candidates.jsonl"
    shards = out.with_name(out.name + ".shards")
    args = [
        "augment",
        "--segments",
        str(segments),
        "--out",
        str(out),
        "--model",
        tiny_model,
        "--backend",
        "transformers",
        "--set",
        "cluster.engine=ray",
        "--set",
        "cluster.shard_rows=2",
        "--set",
        "cluster.local_cpus=2",
        "--set",
        "augment.max_new_tokens=48",
    ]
    proc = humback(*args)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(shards.glob("0*.jsonl"))) < 2 and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray instance it started, at once
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in shards.glob("0*.jsonl")}
    assert 2 <= len(before) < 60 and not out.exists(), "the kill came too late to test a resume"
    proc = humback(*args)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    after = {p.name: p.stat().st_mtime_ns for p in shards.glob("0*.jsonl")}
    assert all(after[name] == stamp for name, stamp in before.items())  # finished shards not recomputed
    assert len(after) == 60 and [r["id"] for r in read_jsonl(out)] == [f"s{i}" for i in range(120)]
    assert f"'resumed_rows': {2 * len(before)}" in stdout


def test_an_unreachable_cluster_is_named_and_nothing_is_written(tiny_model, tmp_path):
    segments = write(tmp_path / "segments.jsonl", [{"id": "s", "text": "A loaf."}])
    proc = humback(
        "augment",
        "--segments",
        str(segments),
        "--out",
        str(tmp_path / "c.jsonl"),
        "--model",
        tiny_model,
        "--set",
        "cluster.engine=ray",
        "--set",
        "cluster.address=127.0.0.1:9",
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3 and "cannot reach the Ray cluster at '127.0.0.1:9'" in stderr
    # Nothing but the command's lock (humback's own, left for the next writer) beside the input.
    assert "Traceback" not in stderr and sorted(p.name for p in tmp_path.iterdir()) == [
        ".humback.lock",
        "segments.jsonl",
    ]


def test_a_replica_that_cannot_load_its_model_stops_the_stage_with_its_error(cluster, tiny_model, tmp_path):
    cands = write(tmp_path / "candidates.jsonl", CANDIDATES[:3])
    gen = RayRunner(EngineConfig(backend="ctranslate2", device="tpu"), tiny_model, cluster)
    with pytest.raises(ModelError, match="device 'tpu' is not one CTranslate2 runs on"):
        curate(cands, gen, tmp_path / "out", CurateConfig(method="expected", max_new_tokens=0))
    assert not (tmp_path / "out" / "scored.jsonl").exists()


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr("humback.cluster._check_reachable", lambda address: None)
    with pytest.raises(ConfigError, match=r"pip install 'humback\[ray\]'"):
        connect(ClusterConfig(engine="ray", address="auto"))


def test_a_bad_address_is_a_config_error(monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process
    with pytest.raises(ConfigError, match="is not 'local', 'auto', HOST:PORT or ray://HOST:PORT"):
        connect(ClusterConfig(engine="ray", address="somewhere"))


def test_unreachable_in_process_is_an_environment_fault(monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(ClusterError) as err:
        connect(ClusterConfig(engine="ray", address="ray://127.0.0.1:9"))
    assert err.value.exit_code == 3


def test_status_shows_the_shards_of_a_running_or_killed_stage(tmp_path):
    from humback.status import summary

    write(tmp_path / "segments.jsonl", [{"id": str(i), "text": "x"} for i in range(10)])
    (tmp_path / "candidates.jsonl.shards").mkdir()
    for k in (0, 1):
        write(tmp_path / "candidates.jsonl.shards" / f"{k:05d}.jsonl", [{"id": str(k)}])
    data = {
        "name": "x",
        "run_dir": str(tmp_path),
        "config": {"iterations": 1, "cluster": {"shard_rows": 3}},
        "stages": {"augment": {"status": "running"}},
    }
    assert "ray: 2 of 4 shards finished (50%)" in summary(data)


def test_segment_on_ray_keeps_what_the_local_engine_keeps(cluster, tmp_path):
    """Files extracted and filtered in parallel; dedup in corpus order on the driver: same rows, same funnel,
    same bad-input counts, including duplicates spread over files and a malformed record."""
    import shutil

    from humback.config import SegmentConfig
    from humback.data.segment import demo_corpus_path, segment

    corpus = tmp_path / "corpus"
    shutil.copytree(demo_corpus_path(), corpus)
    pages = sorted(corpus.glob("*.html"))
    shutil.copy(pages[3], corpus / "zz-exact-copy.html")  # a whole page again, later in corpus order
    near = pages[5].read_text().replace("</p>", " Indeed.</p>", 1)
    (corpus / "zz-near-copy.html").write_text(near)
    text = " ".join(
        f"Sentence {i} tells how rye dough differs from wheat dough in water and time." for i in range(40)
    )
    (corpus / "notes.jsonl").write_text(
        json.dumps({"id": "n1", "text": text})
        + "\n{not json\n"
        + json.dumps({"id": "n2", "text": text})
        + "\n"
    )
    cfg = SegmentConfig(max_segments=None)
    local = segment(corpus, tmp_path / "local.jsonl", cfg, log=lambda s: None)
    on_ray = segment(
        corpus,
        tmp_path / "ray.jsonl",
        cfg,
        log=lambda s: None,
        map_files=file_map(cluster.model_copy(update={"cpus_per_replica": 1})),
    )
    assert (tmp_path / "local.jsonl").read_text() == (tmp_path / "ray.jsonl").read_text()
    assert local == on_ray
    assert (
        local["bad_input"]
        and local["funnel"]["dropped_duplicate"]
        and local["funnel"]["dropped_near_duplicate"]
    )


def test_ray_train_runs_two_cpu_workers_and_saves_a_model_the_next_stage_loads(cluster, tiny_model, tmp_path):
    from functools import partial

    from humback.config import TrainConfig
    from humback.generation.base import SamplingParams
    from humback.training.ray_train import train_on_ray
    from humback.training.sft import train

    pairs = write(
        tmp_path / "pairs.jsonl",
        [
            {"instruction": f"Name bread number {i}.", "response": f"Bread {i} is a rye loaf with seeds."}
            for i in range(16)
        ],
    )
    out = tmp_path / "m0"
    cfg = TrainConfig(method="full", lr=3e-3, batch_size=4, micro_batch_size=2, max_steps=3, max_length=256)
    stats = train_on_ray(
        partial(train, [pairs], tiny_model, out, cfg, direction="forward", seed=0, log=print),
        out,
        cluster.model_copy(update={"train_workers": 2}),
    )
    assert stats["processes"] == 2 and stats["steps"] == 3 and stats["first_loss"] is not None
    assert not out.with_name("m0.tmp").exists() and not out.with_name("m0.ray").exists()
    gen = load_generator(EngineConfig(backend="transformers", device="cpu"), str(out))
    assert len(gen.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(max_new_tokens=4))) == 1


def test_the_loop_with_engine_ray_gives_the_local_engine_rows(cluster, tiny_model, tmp_path):
    """`humback run` with cluster.engine: ray (segment, augment and curate on the cluster, greedy
    instructions): the same segments, candidates and scored ids, in the same order, as engine: local."""
    from humback.pipeline import run_pipeline

    base = [
        "model=" + tiny_model,
        "segment.max_segments=6",
        "train.max_steps=1",
        "train.batch_size=4",
        "train.micro_batch_size=4",
        "train.max_length=1536",
        "augment.max_new_tokens=8",
        "augment.temperature=0",
        "curate.method=expected",
        "curate.max_new_tokens=0",
        "curate.threshold=1.0",
        "iterations=1",
        "generation.batch_size=4",
    ]
    runs = {}
    for engine in ("local", "ray"):
        cfg = load_config(
            None, base + [f"cluster.engine={engine}", "cluster.replicas=2", "cluster.shard_rows=2"]
        )
        runs[engine] = (tmp_path / engine, run_pipeline(cfg, tmp_path / engine, log=lambda s: None))
    (local, a), (ray_dir, b) = runs["local"], runs["ray"]
    for name in ("segments.jsonl", "candidates.jsonl"):  # candidates name their run's own M_yx
        assert (local / name).read_text().replace(str(local), "RUN") == (ray_dir / name).read_text().replace(
            str(ray_dir), "RUN"
        ), name
    ids = [[r["id"] for r in read_jsonl(d / "iter1" / "scored.jsonl")] for d in (local, ray_dir)]
    assert ids[0] == ids[1] and len(ids[0]) == 6
    assert {k: s["stats"]["rows"] for k, s in a["stages"].items() if "rows" in s["stats"]} == {
        k: s["stats"]["rows"] for k, s in b["stages"].items() if "rows" in s["stats"]
    }
    assert (ray_dir / "candidates.jsonl.shards").is_dir() and not (local / "candidates.jsonl.shards").exists()


def test_a_budget_stops_at_a_shard_boundary_and_the_rerun_computes_only_the_rest(
    cluster, tiny_model, tmp_path
):
    """Replicas claim each shard from the stage's ledger: the first shard alone until a row's cost is known,
    then only whole shards that fit. The rerun with the limit raised computes the missing shards only."""
    from humback.budget import Allowance, BudgetStop

    segments = write(
        tmp_path / "segments.jsonl", [{"id": f"s{i}", "text": f"Dough {i} rests. " * 20} for i in range(12)]
    )
    engine = EngineConfig(backend="transformers", device="cpu", batch_size=3)
    cfg = AugmentConfig(max_new_tokens=8)
    out = tmp_path / "candidates.jsonl"
    budget = Allowance("augment", [("budget.stages.augment", {"max_generated_tokens": 60}, {})])
    with pytest.raises(BudgetStop) as stop:
        augment(segments, RayRunner(engine, tiny_model, cluster, budget), out, cfg)
    done = stop.value.done
    assert 3 <= done < 12 and done % 3 == 0 and stop.value.left == 12 - done
    shards = {p: p.stat().st_mtime_ns for p in out.with_name(out.name + ".shards").glob("0*.jsonl")}
    assert len(shards) == done // 3 and budget.spent()["rows"] == done
    spent = budget.spent()["generated_tokens"]
    assert 0 < spent and (spent <= 60 or done == 3)  # passed only by the first shard, run unmeasured
    raised = Allowance("augment", [], budget.spent())
    stats = augment(segments, RayRunner(engine, tiny_model, cluster, raised), out, cfg)
    assert stats["resumed_rows"] == done and raised.spent()["rows"] == 12
    assert [r["id"] for r in read_jsonl(out)] == [f"s{i}" for i in range(12)]  # every row once, in order
    assert {p: p.stat().st_mtime_ns for p in shards} == shards  # the finished shards were not recomputed

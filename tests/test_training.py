"""Training on the tiny model: the paper's lr schedule, seeded determinism, resume after kill -9."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from humback.config import TrainConfig
from humback.training.sft import train

PAIRS = [
    {
        "instruction": f"Question {i}: how do I keep bread fresh?",
        "response": "Wrap it in a cloth. " * (1 + i % 7),
    }
    for i in range(24)
]


def pairs_file(folder) -> list:
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return [path]


def small(**kw) -> TrainConfig:
    base = {
        "method": "full",
        "lr": 1e-5,
        "min_lr_ratio": 0.9,
        "batch_size": 4,
        "micro_batch_size": 2,
        "max_steps": 5,
        "max_length": 512,
    }
    return TrainConfig(**{**base, **kw})


def curve(out) -> list[dict]:
    return json.loads((out / "humback_train.json").read_text())["loss_curve"]


def test_paper_schedule_ends_at_9e_6(tiny_model, tmp_path):
    """Paper §7: lr 1e-5 decaying linearly to 9e-6; the last step trains at exactly 9e-6."""
    train(pairs_file(tmp_path), tiny_model, tmp_path / "m", small(), direction="forward", log=lambda s: None)
    lrs = [e["lr"] for e in curve(tmp_path / "m")]
    assert len(lrs) == 5
    assert lrs[0] == pytest.approx(1e-5, rel=1e-9) and lrs[-1] == pytest.approx(9e-6, rel=1e-9)
    assert all(b < a for a, b in itertools.pairwise(lrs))  # strictly decreasing, linearly
    assert [round(a - b, 15) for a, b in itertools.pairwise(lrs)] == [2.5e-7] * 4


def test_same_seed_same_loss_curve(tiny_model, tmp_path):
    cfg = small(method="lora", lr=1e-3)
    train(
        pairs_file(tmp_path),
        tiny_model,
        tmp_path / "a",
        cfg,
        direction="backward",
        seed=7,
        log=lambda s: None,
    )
    train(
        pairs_file(tmp_path),
        tiny_model,
        tmp_path / "b",
        cfg,
        direction="backward",
        seed=7,
        log=lambda s: None,
    )
    train(
        pairs_file(tmp_path),
        tiny_model,
        tmp_path / "c",
        cfg,
        direction="backward",
        seed=8,
        log=lambda s: None,
    )
    a, b, c = (curve(tmp_path / x) for x in "abc")
    assert [e["loss"] for e in a] == [e["loss"] for e in b]
    assert [e["loss"] for e in a] != [e["loss"] for e in c]


def test_killed_training_resumes_from_its_last_checkpoint(tiny_model, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    out = tmp_path / "model"
    cmd = [
        sys.executable,
        "-m",
        "humback.cli",
        "train",
        "--direction",
        "forward",
        "--model",
        tiny_model,
        "--data",
        str(data),
        "--out",
        str(out),
    ]
    for key, value in {
        "method": "full",
        "lr": 1e-3,
        "batch_size": 4,
        "micro_batch_size": 2,
        "max_steps": 30,
        "save_steps": 3,
        "max_length": 512,
    }.items():
        cmd += ["--set", f"train.{key}={value}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    trainer_dir = out.with_name("model.tmp") / "trainer"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if any(trainer_dir.glob("checkpoint-*/trainer_state.json")):  # a whole checkpoint is there
                break
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists(), "training finished before it could be killed"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    stats = json.loads((out / "humback_train.json").read_text())
    assert stats["stats"]["resumed_from"] and "checkpoint-" in stats["stats"]["resumed_from"]
    steps = [e["step"] for e in stats["loss_curve"]]
    assert steps == list(range(1, 31))  # the curve is whole: steps before the kill come from the checkpoint
    assert not out.with_name("model.tmp").exists() and (out / "model.safetensors").is_file()


def test_only_whole_checkpoints_of_the_same_run_are_resumed(tmp_path):
    from humback.training.sft import last_checkpoint

    (tmp_path / "humback_resume_key").write_text("k1")
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-6").mkdir()  # cut short by the kill: no trainer_state.json yet
    assert last_checkpoint(tmp_path, "k1") == str(tmp_path / "checkpoint-3")
    (tmp_path / "checkpoint-6" / "trainer_state.json").write_text('{"trunc')
    assert last_checkpoint(tmp_path, "k1") == str(tmp_path / "checkpoint-3")
    assert last_checkpoint(tmp_path, "another run") is None


def test_two_process_data_parallel_on_cpu(tiny_model, tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo): it trains (loss falls), one process writes the
    model, and the saved model loads and generates."""
    import shutil as sh

    launcher = sh.which("accelerate", path=os.path.dirname(sys.executable))
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    out = tmp_path / "ddp"
    cmd = [
        launcher,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "humback.cli",
        "train",
        "--direction",
        "forward",
        "--model",
        tiny_model,
        "--data",
        str(data),
        "--out",
        str(out),
    ]
    for key, value in {
        "method": "full",
        "lr": 3e-3,
        "batch_size": 8,
        "micro_batch_size": 2,
        "max_steps": 12,
        "max_length": 512,
    }.items():
        cmd += ["--set", f"train.{key}={value}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((out / "humback_train.json").read_text())
    assert stats["stats"]["processes"] == 2
    losses = [e["loss"] for e in stats["loss_curve"]]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert not (out / "training_args.bin").exists() and not out.with_name("ddp.tmp").exists()

    from humback.config import EngineConfig
    from humback.generation import load_generator
    from humback.generation.base import SamplingParams

    gen = load_generator(EngineConfig(backend="transformers", device="cpu"), str(out))
    assert len(gen.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(max_new_tokens=4))) == 1


@pytest.mark.parametrize("name", ["multi_gpu", "deepspeed_zero2", "deepspeed_zero3", "fsdp"])
def test_shipped_accelerate_configs_load(name):
    """The multi-GPU configs are read by accelerate's own loader (no GPU here to run them)."""
    from pathlib import Path

    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(Path(__file__).parents[1] / "configs" / "accelerate" / f"{name}.yaml"))
    assert cfg.distributed_type.value == {"multi_gpu": "MULTI_GPU", "fsdp": "FSDP"}.get(name, "DEEPSPEED")
    if name.startswith("deepspeed"):
        assert cfg.deepspeed_config["zero_stage"] == int(name[-1])


def test_plan_keeps_examples_per_step_whatever_the_hardware():
    from humback.training.sft import plan

    cfg = TrainConfig(micro_batch_size=4)
    assert (plan(100, cfg, 1).steps, plan(100, cfg, 1).batch) == (30, 8)  # paper Table 18, first row
    big = plan(5000, cfg, 2)  # paper: batch 32 from 3,000 examples; 4 per micro-batch on 2 processes
    assert (big.batch, big.micro, big.accumulate, big.processes) == (32, 4, 4, 2)
    assert plan(5000, TrainConfig(micro_batch_size=64), 1).micro == 32  # never more than the batch

"""The openai backend against a real OpenAI-compatible server: `transformers serve` with the tiny model on
127.0.0.1. The server is killed mid-run (clear error naming the endpoint, finished rows kept), then
restarted (the rerun finishes the rest, every segment once, in order)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from humback.records import read_jsonl

SERVE = shutil.which("transformers", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(
    SERVE is None, reason="needs transformers' `serve` command (fastapi, uvicorn)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [SERVE, "serve", model, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("transformers serve did not come up in 120 s")


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


SECRET = "sk-humback-test-secret-0123456789"
ENV = {**os.environ, "OPENAI_API_KEY": SECRET}


def humback(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "humback.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )


def test_server_killed_mid_run_then_restarted(tiny_model, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    segments = tmp_path / "segments.jsonl"
    ids = [f"seg{i:03d}" for i in range(60)]
    segments.write_text(
        "".join(json.dumps({"id": i, "text": f"Text {i} about bread and tea. " * 5}) + "\n" for i in ids)
    )
    out = tmp_path / "candidates.jsonl"
    args = [
        "augment",
        "--backend",
        "openai",
        "--base-url",
        url,
        "--model",
        tiny_model,
        "--segments",
        str(segments),
        "--out",
        str(out),
        "--set",
        "augment.max_new_tokens=48",
        "--set",
        "generation.concurrency=2",
        "--set",
        "generation.max_retries=1",
        "--set",
        "generation.timeout=20",
    ]
    server = start_server(tiny_model, port)
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "humback.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        partial = out.with_name(out.name + ".partial")
        deadline = time.time() + 300
        while time.time() < deadline and run.poll() is None:
            if partial.exists() and len(partial.read_text().splitlines()) >= 8:
                break
            time.sleep(0.2)
    finally:
        kill(server)
    _, err = run.communicate(timeout=300)
    assert run.returncode == 3, err
    assert f"127.0.0.1:{port}" in err and "Traceback" not in err and "rerun" in err
    kept = [json.loads(line)["id"] for line in partial.read_text().splitlines()]
    assert 8 <= len(kept) < len(ids) and not out.exists()

    server = start_server(tiny_model, port)
    try:
        done = humback(*args)
    finally:
        kill(server)
    assert done.returncode == 0, done.stderr
    rows = list(read_jsonl(out))
    assert [r["id"] for r in rows] == ids  # every segment once, in order, none lost or repeated
    assert all(r["generator"]["model"] == tiny_model for r in rows)
    # The API key comes from the environment and is written nowhere: not in rows, cache or messages.
    assert SECRET not in done.stdout + done.stderr + err
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


def test_expected_scores_need_logprobs_clear_error(tiny_model, tmp_path):
    """transformers serve returns no log-probabilities: the 'expected' method says so and how to fix it."""
    port = free_port()
    cands = tmp_path / "candidates.jsonl"
    cands.write_text(json.dumps({"id": "a", "instruction": "Say hi.", "response": "Hi."}) + "\n")
    server = start_server(tiny_model, port)
    try:
        res = humback(
            "curate",
            "--backend",
            "openai",
            "--base-url",
            f"http://127.0.0.1:{port}/v1",
            "--judge",
            tiny_model,
            "--candidates",
            str(cands),
            "--out-dir",
            str(tmp_path / "iter1"),
            "--set",
            "curate.method=expected",
            "--set",
            "curate.max_new_tokens=0",
            "--set",
            "generation.max_retries=0",
        )
        ok = humback(
            "curate",
            "--backend",
            "openai",
            "--base-url",
            f"http://127.0.0.1:{port}/v1",
            "--judge",
            tiny_model,
            "--candidates",
            str(cands),
            "--out-dir",
            str(tmp_path / "iter1b"),
            "--set",
            "curate.method=sample",
            "--set",
            "curate.max_new_tokens=8",
        )
    finally:
        kill(server)
    # A setting to change, not a fault to wait out: exit 2 with the fix.
    assert res.returncode == 2 and "use the 'sample' method" in res.stderr and "Traceback" not in res.stderr
    assert ok.returncode == 0, ok.stderr
    assert [r["id"] for r in read_jsonl(tmp_path / "iter1b" / "scored.jsonl")] == ["a"]


def test_the_servers_own_token_counts_are_metered(tiny_model):
    """What the server reports in `usage` (what a hosted API bills) is what the meter counts."""
    from humback.generation.base import SamplingParams
    from humback.generation.meter import MeteredGenerator, usage_of
    from humback.generation.openai_api import OpenAIGenerator

    port = free_port()
    server = start_server(tiny_model, port)
    try:
        gen = MeteredGenerator(OpenAIGenerator(tiny_model, base_url=f"http://127.0.0.1:{port}/v1"))
        chats = [[{"role": "user", "content": f"Tell me about bread number {i}."}] for i in range(3)]
        replies = gen.generate(chats, SamplingParams(max_new_tokens=8))
    finally:
        kill(server)
    used = usage_of(gen)
    assert used.requests == 3 and len(replies) == 3
    assert used.estimated == 0  # transformers serve reports usage: nothing counted from characters
    assert used.prompt_tokens > 3 * 5 and 0 < used.generated_tokens <= 3 * 8

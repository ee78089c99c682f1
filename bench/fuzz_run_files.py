"""Hostile run folders against every reader of run files: how many cases escape as a traceback, a server
error or a write through a planted link, before vs after (both in this one invocation).

A small valid run folder is built (manifest with every stage's stats, config, segments, candidates, scored
and selected rows of two iterations, a training record, eval metrics and answers). Each case applies one
seeded mutation to a copy:
- a JSON file (manifest.json, eval/metrics.json, models/m0/humback_train.json) gets a value somewhere in its
  tree replaced (null, a list, a string, a huge integer, NaN, a deep list) or a key deleted, or a stage key
  added (`curate:x`);
- a JSONL file (segments, candidates, scored, selected) gets a line replaced (cut JSON, invalid UTF-8, a
  list, an id that is a list, a NaN score, text that is a number) or is emptied;
- a symbolic link is planted at a path a command writes (report/funnel.png, report/index.html, report/
  report.md, the export folder's data/ or README.md), pointing outside the run.
Readers: `humback status`, `report`, `export`, and every viewer endpoint. A case escapes when a reader
raises anything but humback's own located error, the viewer answers 5xx, or the link's target changed.

Baseline: the same cases against humback's source at `--baseline REV` (a git worktree of that revision,
run in a subprocess); candidate: the source of this checkout.

    # writes results/fuzz_run_files.json
    .venv/bin/python bench/fuzz_run_files.py --cases 300 --baseline 5d99ab2
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_VALUES = [
    None,
    [],
    {},
    "x",
    10**30,
    -1,
    True,
    float("nan"),
    [[[[[]]]]],
    "<img src=x onerror=alert(1)>",
]
HOSTILE_LINES = [
    b'{"id": "cut", "instruction": ',
    b"\xff\xfe not utf-8",
    b"[1, 2]",
    b'{"id": [1], "instruction": "a"}',
    b'{"id": "n1", "score": NaN, "instruction": "a", "response": "b"}',
    b'{"id": "t1", "instruction": 12345, "response": ["b"]}',
    b'"a string"',
    b"{}",
]
JSON_FILES = ["manifest.json", "eval/metrics.json", "models/m0/humback_train.json"]
JSONL_FILES = [
    "segments.jsonl",
    "candidates.jsonl",
    "iter1/scored.jsonl",
    "iter1/selected.jsonl",
    "iter2/scored.jsonl",
]
LINK_PATHS = [
    "report/funnel.png",
    "report/index.html",
    "report/report.md",
    "@export/data",
    "@export/README.md",
]


def jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def base_run(root: Path, n: int = 24) -> None:
    from humback.config import RunConfig

    text = "Volcanoes erupt when magma rises through the crust and its gases come out of solution. " * 8
    segs = [
        {
            "id": f"s{i}",
            "text": f"{i} {text}",
            "url": f"https://example.org/{i}",
            "header_path": ["T", str(i)],
        }
        for i in range(n)
    ]
    jsonl(root / "segments.jsonl", segs)
    jsonl(
        root / "candidates.jsonl",
        [
            {"id": s["id"], "instruction": f"Why {i}?", "response": s["text"], "segment_id": s["id"]}
            for i, s in enumerate(segs)
        ],
    )
    for t in (1, 2):
        scored = [
            {
                "id": s["id"],
                "score": (i * t) % 5 + 1.0,
                "judge_score": (i * t) % 5 + 1.0,
                "ifd": 0.5,
                "reasoning": "r",
                "iteration": t,
                "instruction": f"Why {i}?",
                "response": s["text"],
            }
            for i, s in enumerate(segs)
        ]
        jsonl(root / f"iter{t}" / "scored.jsonl", scored)
        jsonl(root / f"iter{t}" / "selected.jsonl", [r for r in scored if r["score"] >= 4])
    (root / "models" / "m0").mkdir(parents=True)
    (root / "models" / "m0" / "humback_train.json").write_text(
        json.dumps(
            {
                "config": {},
                "stats": {},
                "loss_curve": [{"step": k, "loss": 2 - k / 10, "lr": 1e-5} for k in range(1, 6)],
            }
        )
    )
    curate = {
        "rows": n,
        "selected": 10,
        "threshold": 4.0,
        "parse_failure_rate": 0.0,
        "mean_score": 3.0,
        "score_histogram": {},
        "method": "sample",
        "response_chars_pool": 700,
        "response_chars_selected": 700,
    }
    train = {
        "steps": 5,
        "batch_size": 8,
        "method": "lora",
        "first_loss": 2.0,
        "last_loss": 1.5,
        "examples": 10,
    }
    stages = {
        "seed": {"stats": {"rows": 10, "drops": {}}},
        "segment": {"stats": {"rows": n, "funnel": {"documents": 9, "segments": 40}}},
        "train:myx": {"stats": train},
        "augment": {"stats": {"rows": n, "empty_instructions": 0, "resumed_rows": 0}},
        "train:m0": {"stats": train},
        "curate:1": {"stats": curate},
        "train:m1": {"stats": train},
        "curate:2": {"stats": curate},
        "train:m2": {"stats": train},
    }
    outputs = {
        "seed": {"seed": "seed.jsonl"},
        "segment": {"segments": "segments.jsonl"},
        "augment": {"candidates": "candidates.jsonl"},
    }
    for key, st in stages.items():
        out = outputs.get(key) or (
            {"model": f"models/{key[6:]}"}
            if key.startswith("train")
            else {"scored": f"iter{key[7:]}/scored.jsonl", "selected": f"iter{key[7:]}/selected.jsonl"}
        )
        st.update(
            status="done", seconds=1.0, fingerprint="f", outputs={k: str(root / v) for k, v in out.items()}
        )
    (root / "manifest.json").write_text(
        json.dumps(
            {"name": "fuzz", "run_dir": str(root), "config": RunConfig().model_dump(), "stages": stages}
        )
    )
    (root / "eval" / "answers").mkdir(parents=True)
    pair = {"win_rate": 0.5, "n": 4, "lc_win_rate": 0.5}
    (root / "eval" / "metrics.json").write_text(
        json.dumps(
            {
                "heldout": "h.jsonl",
                "nll_pairs": 4,
                "answer_pairs": 4,
                "backward": {"myx": {"instruction_nll": 2.0, "rouge_l": 0.2}},
                "forward": {"m0": {"reference_nll": 1.0, "mean_answer_chars": 300}},
                "win_rates": {"judge": "base", "method": "expected", "pairs": {"m1 vs m0": pair}},
                "judges": {"iter1": {"signals": {"score": {"auc": 0.8}}}},
            }
        )
    )
    for m in ("m0", "m1"):
        (root / "eval" / "answers" / f"{m}.json").write_text(
            json.dumps([{"instruction": "Why?", "output": m}])
        )


def mutate_json(value, rng: random.Random):
    """One hostile change somewhere in a JSON value's tree."""
    if not isinstance(value, (dict, list)) or not value or rng.random() < 0.25:
        return copy.deepcopy(rng.choice(HOSTILE_VALUES))
    if isinstance(value, dict):
        key = rng.choice(sorted(value))
        if rng.random() < 0.2:
            return {k: v for k, v in value.items() if k != key}
        if key == "stages" and rng.random() < 0.2:
            return {
                **value,
                "stages": {
                    **value["stages"],
                    rng.choice(["curate:x", "train:", "seed:1"]): {"status": "done"},
                },
            }
        return {**value, key: mutate_json(value[key], rng)}
    i = rng.randrange(len(value))
    return value[:i] + [mutate_json(value[i], rng)] + value[i + 1 :]


def make_case(run: Path, export: Path, victim: Path, rng: random.Random) -> str:
    kind = rng.choice(["json", "json", "jsonl", "link"])
    if kind == "json":
        name = rng.choice(JSON_FILES)
        path = run / name
        path.write_text(json.dumps(mutate_json(json.loads(path.read_text()), rng)))
        return f"json:{name}"
    if kind == "jsonl":
        name = rng.choice(JSONL_FILES)
        path = run / name
        lines = path.read_bytes().splitlines()
        if rng.random() < 0.15:
            path.write_bytes(b"")
            return f"jsonl:{name}:empty"
        lines[rng.randrange(len(lines))] = rng.choice(HOSTILE_LINES)
        path.write_bytes(b"\n".join(lines) + b"\n")
        return f"jsonl:{name}"
    name = rng.choice(LINK_PATHS)
    path = export / name[8:] if name.startswith("@export/") else run / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name == "data":
        path.symlink_to(victim.parent, target_is_directory=True)
    else:
        path.symlink_to(victim)
    return f"link:{name}"


def readers(run: Path, export: Path):
    from fastapi.testclient import TestClient

    from humback.export import export as export_run
    from humback.report import report
    from humback.status import status_table
    from humback.viewer.server import create_app

    yield "status", lambda: status_table(run)
    yield "report", lambda: report(run)
    yield "export", lambda: export_run(run, export)
    client = TestClient(create_app(run), base_url="http://127.0.0.1")
    for path in (
        "/api/funnel",
        "/api/candidates",
        "/api/candidates/s3",
        "/api/diff/2",
        "/api/histogram/1",
        "/api/lengths/1",
        "/api/curves",
        "/api/eval",
    ):
        yield f"view {path}", lambda path=path: client.get(path)


def worker(cases: int, seed: int) -> dict:
    from humback.errors import HumbackError

    rng = random.Random(seed)
    counts = {"cases": 0, "reader_calls": 0, "clean_errors": 0, "ok": 0, "escaped": 0}
    escapes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        base_run(template)
        for k in range(cases):
            case_dir = Path(tmp) / f"case{k}"
            run, export, victim = case_dir / "run", case_dir / "export", case_dir / "outside" / "victim.txt"
            shutil.copytree(template, run, symlinks=True)
            victim.parent.mkdir(parents=True)
            victim.write_text("do not touch")
            (victim.parent / "train.jsonl").write_text("theirs")
            case = make_case(run, export, victim, rng)
            counts["cases"] += 1
            for name, call in readers(run, export):
                counts["reader_calls"] += 1
                outcome = "ok"
                try:
                    result = call()
                    if hasattr(result, "status_code") and result.status_code >= 500:
                        outcome = f"HTTP {result.status_code}"
                except HumbackError:
                    outcome = "clean"
                except Exception as e:  # noqa: BLE001 (what the benchmark counts)
                    outcome = type(e).__name__
                if (
                    victim.read_bytes() != b"do not touch"
                    or (victim.parent / "train.jsonl").read_bytes() != b"theirs"
                ):
                    outcome = "wrote through a link"
                    victim.write_text("do not touch")
                    (victim.parent / "train.jsonl").write_text("theirs")
                if outcome == "ok":
                    counts["ok"] += 1
                elif outcome == "clean":
                    counts["clean_errors"] += 1
                else:
                    counts["escaped"] += 1
                    label = f"{case.split(':')[0]}:{name} -> {outcome}"
                    escapes[label] = escapes.get(label, 0) + 1
            shutil.rmtree(case_dir)
    return {**counts, "escapes": dict(sorted(escapes.items(), key=lambda kv: -kv[1]))}


def run_worker(src: Path, cases: int, seed: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "HUMBACK_CACHE": tempfile.mkdtemp()}
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", "--cases", str(cases), "--seed", str(seed)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker on {src} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline", default="5d99ab2", help="git revision measured as the baseline")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        import warnings

        warnings.filterwarnings("ignore")
        print(json.dumps(worker(args.cases, args.seed)))
        return
    from record import write_record

    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old), args.baseline],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            before = run_worker(old / "src", args.cases, args.seed)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    after = run_worker(ROOT / "src", args.cases, args.seed)
    print(json.dumps({"before": before, "after": after}, indent=1), flush=True)
    write_record(
        ROOT / "bench" / "results" / "fuzz_run_files.json",
        "fuzz_run_files",
        "reader calls that escaped (a traceback, a 5xx, a write through a link) of all made on hostile run"
        " folders (lower is better)",
        before["escaped"],
        after["escaped"],
        round(before["escaped"] / max(1, after["escaped"]), 1),
        baseline_revision=args.baseline,
        before=before,
        after=after,
    )


if __name__ == "__main__":
    main()

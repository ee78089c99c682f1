"""`humback view`: the API over a generated run folder (paging, filters, search, detail, diff, funnel),
read-only, with hostile text served as data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("duckdb", reason="pip install 'humback[view]' to run the viewer tests")
from fastapi.testclient import TestClient

from humback.viewer.server import create_app

HOSTILE = '<script>alert("x")</script><img src=x onerror="alert(1)">'


def jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_run(root: Path, n: int = 120) -> Path:
    segs = [
        {
            "id": f"r{i:03d}",
            "text": (HOSTILE if i == 7 else f"Segment {i} about {'recipes' if i % 10 == 0 else 'trains'}."),
            "url": f"https://example.org/{i}",
            "header_path": ["Page", f"Part {i}"],
        }
        for i in range(n)
    ]
    jsonl(root / "segments.jsonl", segs)
    jsonl(
        root / "candidates.jsonl",
        [
            {
                "id": s["id"],
                "instruction": f"Write about item {i}% now",
                "response": s["text"],
                "segment_id": s["id"],
            }
            for i, s in enumerate(segs)
        ],
    )
    for t in (1, 2):
        scored = [
            {
                "id": s["id"],
                "judge_score": (i * t) % 5 + 1.0,
                "score": (i * t) % 5 + 1.0,
                "ifd": 0.5 + i / 1000,
                "reasoning": f"Reason {i}",
                "iteration": t,
            }
            for i, s in enumerate(segs)
        ]
        scored[3] = {
            "id": segs[3]["id"],
            "skipped": "empty_instruction",
            "score": None,
            "judge_score": None,
            "iteration": t,
        }
        jsonl(root / f"iter{t}" / "scored.jsonl", scored)
        jsonl(
            root / f"iter{t}" / "selected.jsonl", [{"id": s["id"]} for s in scored if (s["score"] or 0) >= 4]
        )
    # Iteration 2 rewrote three of its rows (one rewrite used, one turned down by a check, one that did not
    # parse) and passed one over as too close to a selected one.
    rewrites = []
    for i, status in ((10, "rewritten"), (20, "failed_overlap"), (30, "unparsed")) if n > 30 else ():
        seg = segs[i]
        text = f"Rewritten: {seg['text']} It explains more."
        rewrites.append(
            {
                "id": seg["id"],
                "instruction": f"Write about item {i}% now",
                "response": text if status == "rewritten" else seg["text"],
                "original_response": seg["text"],
                "rewrite": {
                    "status": status,
                    "model": "rewriter",
                    **({"text": text} if status == "failed_overlap" else {}),
                    **({"reply": "no markers"} if status == "unparsed" else {}),
                },
            }
        )
    jsonl(root / "iter2" / "rewrites.jsonl", rewrites)
    if n > 30:
        jsonl(
            root / "iter2" / "passed_over.jsonl",
            [{"id": segs[11]["id"], "reason": "diversity", "like": segs[10]["id"], "similarity": 0.93}],
        )
    (root / "models" / "m0").mkdir(parents=True)
    (root / "models" / "m0" / "humback_train.json").write_text(
        json.dumps({"loss_curve": [{"step": k, "loss": 2.0 - 0.1 * k, "lr": 1e-5} for k in range(1, 6)]})
    )
    jsonl(
        root / "eval" / "calibration" / "iter1" / "scored.jsonl",
        [
            {"id": f"h{i}", "score": float(i % 7), "ifd": 0.3 + (i % 3) / 10, "label": int(i % 7 > 2)}
            for i in range(30)
        ],
    )
    selected = {
        t: sum(1 for line in (root / f"iter{t}" / "selected.jsonl").read_text().splitlines() if line)
        for t in (1, 2)
    }
    (root / "manifest.json").write_text(
        json.dumps(
            {
                "name": "viewer-test",
                "stages": {
                    "segment": {
                        "status": "done",
                        "stats": {"rows": n, "funnel": {"documents": 40, "dropped_too_short": 9}},
                    },
                    "augment": {"status": "done", "stats": {"rows": n}},
                    **{
                        f"curate:{t}": {
                            "status": "done",
                            "stats": {
                                "threshold": 4.0,
                                "selected": selected[t],
                                "skipped": {"empty_instruction": 1},
                            },
                        }
                        for t in (1, 2)
                    },
                },
            }
        )
    )
    return root


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("run"))
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    yield TestClient(create_app(run), base_url="http://127.0.0.1")
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing written into the run


def test_page_and_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and "humback viewer" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert (
        client.get("/static/viewer.js").status_code == 200
        and client.get("/static/../data.py").status_code == 404
    )


def test_the_page_never_writes_server_text_as_html():
    js = (
        Path(__file__).resolve().parents[1] / "src" / "humback" / "viewer" / "static" / "viewer.js"
    ).read_text()
    assert (
        "innerHTML" not in js
        and "outerHTML" not in js
        and "insertAdjacentHTML" not in js
        and "eval(" not in js
    )


def test_paging_filters_search_and_sort(client):
    first = client.get("/api/candidates", params={"limit": 50}).json()
    assert first["total"] == 120 and len(first["rows"]) == 50 and first["iteration"] == 2
    assert (
        client.get("/api/candidates", params={"offset": 100, "limit": 50}).json()["rows"][-1]["id"] == "r119"
    )
    high = client.get("/api/candidates", params={"iteration": 1, "min_score": 4}).json()
    assert high["total"] == sum(1 for i in range(120) if i != 3 and i % 5 + 1 >= 4)
    assert all(r["s1_score"] >= 4 for r in high["rows"])
    chosen = client.get("/api/candidates", params={"iteration": 1, "selected": True, "limit": 200}).json()
    assert chosen["total"] == high["total"] and all(r["sel1"] for r in chosen["rows"])
    found = client.get("/api/candidates", params={"q": "RECIPES"}).json()
    assert found["total"] == 12 and all("recipes" in r["response"] for r in found["rows"])
    assert client.get("/api/candidates", params={"q": "item 5%"}).json()["total"] == 1  # % is literal
    top = client.get("/api/candidates", params={"sort": "s2_ifd", "desc": True, "limit": 3}).json()["rows"]
    assert [r["id"] for r in top] == ["r119", "r118", "r117"]
    bad = client.get("/api/candidates", params={"sort": "id; DROP TABLE cand"})
    assert bad.status_code == 404 and "cannot sort by" in bad.json()["error"]


def test_detail_diff_histogram_funnel(client):
    row = client.get("/api/candidates/r007").json()
    assert row["response"] == HOSTILE and row["segment"]["header_path"] == ["Page", "Part 7"]
    assert row["s1_reasoning"] == "Reason 7" and row["s1_skipped"] is None
    assert client.get("/api/candidates/r003").json()["s2_skipped"] == "empty_instruction"
    assert client.get("/api/candidates/nope").status_code == 404
    diff = client.get("/api/diff/2").json()
    sel = {t: {i for i in range(120) if i != 3 and (i * t) % 5 + 1 >= 4} for t in (1, 2)}
    assert {r["id"] for r in diff["gained"]} == {f"r{i:03d}" for i in sel[2] - sel[1]}
    assert {r["id"] for r in diff["lost"]} == {f"r{i:03d}" for i in sel[1] - sel[2]}
    hist = client.get("/api/histogram/1").json()
    assert sum(hist["all"]) == 119 and sum(hist["selected"]) == len(sel[1])
    funnel = client.get("/api/funnel").json()
    assert funnel["name"] == "viewer-test" and funnel["iterations"] == [1, 2]
    assert [s["rows"] for s in funnel["steps"]] == [40, 120, 120, len(sel[1]), len(sel[2])]
    assert funnel["steps"][1]["dropped"] == {"too_short": 9}
    assert client.get("/api/eval").json() == {"metrics": None, "answers": []}


def test_the_viewers_copy_is_reused_and_follows_changes_to_the_run(tmp_path, monkeypatch):
    from humback.viewer.data import RunData

    monkeypatch.setenv("HUMBACK_CACHE", str(tmp_path / "cache"))
    run = make_run(tmp_path / "run", n=20)
    assert RunData(run).page()["total"] == 20
    copies = list((tmp_path / "cache" / "view").glob("*.duckdb"))
    assert len(copies) == 1 and not list(run.rglob("*.duckdb"))
    stamp = copies[0].stat().st_mtime_ns
    assert RunData(run).page()["total"] == 20 and copies[0].stat().st_mtime_ns == stamp  # reused, not rebuilt
    with open(run / "candidates.jsonl", "a") as f:
        f.write(
            json.dumps({"id": "new", "instruction": "Another?", "response": "Yes.", "segment_id": "new"})
            + "\n"
        )
    assert RunData(run).page()["total"] == 21  # the run changed: read again


def test_view_of_a_folder_that_is_no_run_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "humback.cli", "view", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (
        done.returncode == 2
        and "not a humback run directory" in done.stderr
        and "Traceback" not in done.stderr
    )


def test_lengths_loss_and_roc_curves(client):
    lengths = client.get("/api/lengths/1").json()
    assert sum(lengths["all"]) == 120 and 0 < sum(lengths["selected"]) < 120
    curves = client.get("/api/curves").json()
    assert curves["loss"]["m0"] == [[k, pytest.approx(2.0 - 0.1 * k)] for k in range(1, 6)]
    roc = curves["roc"]["iter1"]
    assert set(roc) == {"score", "ifd"} and roc["score"][0] == [0.0, 0.0] and roc["score"][-1] == [1.0, 1.0]
    assert [0.0, 1.0] in roc["score"]  # the score separates the labels perfectly here
    assert client.get("/api/lengths/9").status_code == 404


def test_rewrites_and_diversity_skips_are_filters_and_in_the_row(client):
    rewritten = client.get("/api/candidates", params={"iteration": 2, "rewrite": "rewritten"}).json()
    assert rewritten["total"] == 1 and rewritten["rows"][0]["id"] == "r010"
    assert client.get("/api/candidates", params={"iteration": 2, "rewrite": "kept"}).json()["total"] == 2
    assert client.get("/api/candidates", params={"iteration": 2, "rewrite": "failed"}).json()["total"] == 1
    skipped = client.get("/api/candidates", params={"iteration": 2, "skipped": "diversity"}).json()
    assert [r["id"] for r in skipped["rows"]] == ["r011"]
    row = client.get("/api/candidates/r020").json()
    assert row["r2_status"] == "failed_overlap" and row["r2_rewrite"].startswith("Rewritten:")
    assert client.get("/api/candidates/r011").json()["s2_like"] == "r010"

"""Hand-edited and hostile run files, configs and requests: each is one located error (exit 2 naming the file
and key; in the viewer a JSON error naming the file), never a traceback, and the rest keeps working."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import yaml

from humback.config import ConfigError, RunConfig, load_config
from test_hardening import humback, one_line_error
from test_writes import curated_run


def test_role_flags_work_on_any_saved_config(tmp_path):
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(RunConfig().model_dump(), sort_keys=False))
    assert "referee: null" in saved.read_text()
    cfg = load_config(
        saved,
        [
            "generation.referee.model=judge-x",
            "generation.referee.backend=transformers",
            "generation.backward.model=myx-2",
        ],
    )
    assert (
        cfg.generation.role("referee").model == "judge-x" and cfg.generation.role("backward").model == "myx-2"
    )
    assert cfg.generation.role("referee").backend == "transformers"
    with pytest.raises(ConfigError, match="'model' is not a section"):
        load_config(saved, ["model.x=1"])  # a value, not a section: still refused


def alias_bomb(levels: int) -> str:
    text = "a0: &a0 [lava, lava, lava, lava, lava, lava, lava, lava, lava, lava]\n"
    for i in range(1, levels + 1):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    return text


def test_alias_bomb_errors_are_short_and_quick(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(9) + "seed: {max_pairs: *a9}\nrandom_seed: *a9\n")
    assert len(bomb.read_bytes()) < 700  # 10**10 items once expanded
    start = time.time()
    proc = humback("run", str(bomb))
    one_line_error(proc, 2, "seed.max_pairs", "random_seed:")
    assert time.time() - start < 60 and len(proc.stderr) < 5000
    # The same through --set: one value holding the whole bomb.
    flow = "{" + ", ".join(line.replace(": ", ": ", 1) for line in alias_bomb(7).splitlines()) + "}"
    start = time.time()
    proc = humback("seed", "--out", str(tmp_path / "s.jsonl"), "--set", f"seed.lang={flow}")
    one_line_error(proc, 2, "seed.lang")
    assert time.time() - start < 60 and len(proc.stderr) < 5000


def test_bad_set_values_and_ranges_are_config_errors():
    for sets, fragment in (
        (["curate.threshold=[4"], "not valid YAML"),
        (["x=!!python/object/apply:os.system ['true']"], "not valid YAML"),
        (["random_seed=-1"], "random_seed"),
        (["random_seed=4294967296"], "random_seed"),
        (["curate.combine={ifd: .nan, bias: 0}"], "curate.combine.ifd"),
        (["curate.combine={ifd: 1, bias: .inf}"], "curate.combine.bias"),
        (["train.lr=.inf"], "train.lr"),
    ):
        with pytest.raises(ConfigError, match=fragment):
            load_config(None, sets)
    one_line_error(
        humback("seed", "--out", "/tmp/x.jsonl", "--set", "curate.threshold=[4"), 2, "not valid YAML"
    )


def test_a_nan_weight_cannot_make_every_score_5(tmp_path):
    from humback.scoring import combined_score

    assert (
        combined_score({"ifd": float("nan")}, {"ifd": 1.0, "bias": 0.0}) is None
    )  # unscored, never selected
    assert combined_score({"ifd": 0.5}, {"ifd": 1.0, "bias": 0.0}) < 5.0
    with pytest.raises(ValueError, match="finite"):
        RunConfig.model_validate({"curate": {"combine": {"ifd": float("nan")}}})


def write_manifest(run: Path, data) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "manifest.json").write_text(json.dumps(data))


WRONG_SHAPES = {
    "stage without status": ({"stages": {"seed": {"stats": {}}}}, "'stages.seed' has no 'status'"),
    "key curate:x": ({"stages": {"curate:x": {"status": "done"}}}, "'stages.curate:x' is not a stage"),
    "stage as a string": ({"stages": {"seed": "done"}}, "'stages.seed' must be an object"),
    "config null": ({"config": None, "stages": {}}, "key 'config' must be an object"),
    "config.segment a list": (
        {"config": {"segment": []}, "stages": {}},
        "'config.segment' must be an object",
    ),
    "stats a list": ({"stages": {"seed": {"status": "done", "stats": []}}}, "'stages.seed.stats'"),
}


@pytest.mark.parametrize("case", sorted(WRONG_SHAPES))
def test_wrong_shaped_manifest_is_a_located_error_for_every_reader(tmp_path, case):
    data, fragment = WRONG_SHAPES[case]
    run = curated_run(tmp_path / "run")
    write_manifest(run, data)
    for args in (
        ("status", str(run)),
        ("report", str(run)),
        ("export", str(run), "--out", str(tmp_path / "e")),
    ):
        one_line_error(humback(*args), 2, "manifest.json", fragment)


def test_wrong_shaped_metrics_and_training_records(tmp_path):
    run = curated_run(tmp_path / "run")
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text("{}")
    one_line_error(
        humback("report", str(run)), 2, "metrics.json: missing key(s) heldout", "rerun humback eval"
    )
    metrics = {k: {} for k in ("backward", "forward", "judges")}
    metrics.update(heldout="h.jsonl", nll_pairs=1, answer_pairs=1, win_rates={"judge": "j", "method": "m"})
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    one_line_error(humback("report", str(run)), 2, "metrics.json: not the shape", "'pairs'")
    (run / "eval" / "metrics.json").unlink()
    (run / "models" / "m0").mkdir(parents=True)
    (run / "models" / "m0" / "humback_train.json").write_text('{"loss_curve": [{"step": "one"}]}')
    one_line_error(humback("report", str(run)), 2, "humback_train.json: key 'loss_curve'")
    # Stats of an older version (missing keys) are shown as far as they go, not a traceback.
    write_manifest(run, {"stages": {"curate:1": {"status": "done", "stats": {"rows": 3}}}})
    proc = humback("status", str(run))
    assert proc.returncode == 0 and "stats incomplete" in proc.stdout, proc.stderr


def test_dataset_card_escapes_free_text_and_keeps_valid_front_matter(tmp_path):
    from humback.export import dataset_card

    hostile = (
        "# Heading\n<img src=x onerror=alert(1)> [click](javascript:alert(1)) `x` ```\n---\nlicense: evil"
    )
    manifest = {
        "name": hostile,
        "config": {
            "model": hostile,
            "segment": {"corpus": hostile},
            "seed": {"source": hostile, "lang": "en\n---"},
            "generation": {"model": "```\n# out"},
        },
        "stages": {},
    }
    card = dataset_card(manifest, 1, 5, ["data/train.jsonl"], "apache-2.0", None)
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["license"] == "apache-2.0" and meta["language"] == ["und"]
    assert "<img" not in body and "](javascript" not in body and "\n# Heading" not in body
    assert body.count("\n---\n") == 0 and "[click]" not in body
    fences = [line for line in body.splitlines() if line.startswith("```")]
    assert fences[0].rstrip("yaml") == fences[1] and len(fences[1]) > 3  # longer than any ``` inside
    run = curated_run(tmp_path / "run")
    one_line_error(
        humback("export", str(run), "--out", str(tmp_path / "e"), "--license", "mit\n---\nx: 1"),
        2,
        "--license",
    )


# -- the viewer ------------------------------------------------------------------------------------------

pytest.importorskip("duckdb", reason="pip install 'humback[view]' to run the viewer tests")


def client(run: Path, host: str = "127.0.0.1"):
    from fastapi.testclient import TestClient

    from humback.viewer.server import create_app

    return TestClient(create_app(run), base_url=f"http://{host}")


def test_viewer_answers_only_its_own_host_names(tmp_path):
    from test_viewer import make_run

    run = make_run(tmp_path / "run", n=10)
    assert client(run, "evil.example.com").get("/api/funnel").status_code == 400
    for host in ("127.0.0.1", "localhost", "127.0.0.1:8765"):
        assert client(run, host).get("/api/funnel").status_code == 200


def test_viewer_reads_run_paths_literally(tmp_path):
    from test_viewer import make_run

    make_run(tmp_path / "runA", n=12)
    make_run(tmp_path / "runB", n=30)
    odd = make_run(tmp_path / "run?", n=24)
    page = client(odd).get("/api/candidates", params={"limit": 200}).json()
    assert page["total"] == 24 and len({r["id"] for r in page["rows"]}) == 24
    star = make_run(tmp_path / "r[u]n*", n=5)
    assert client(star).get("/api/candidates").json()["total"] == 5


def test_viewer_bounds_requests_and_skips_non_finite_values(tmp_path):
    from test_viewer import make_run

    run = make_run(tmp_path / "run", n=20)
    lines = (run / "iter1" / "scored.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    rows[0]["score"], rows[1]["score"], rows[2]["score"] = 1e308, -1e308, "NaN"
    (run / "iter1" / "scored.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = client(run)
    assert c.get("/api/candidates", params={"offset": 2**63}).status_code == 422
    assert c.get("/api/candidates", params={"limit": 2**63}).status_code == 422
    assert c.get("/api/candidates", params={"min_score": "nan"}).status_code == 422
    h = c.get("/api/histogram/1")
    assert h.status_code == 200, h.text
    body = h.json()
    assert (
        all(math.isfinite(e) for e in body["edges"]) and sum(body["all"]) == 18
    )  # the NaN and the unscored row are left out
    assert c.get("/api/histogram/99999999999").status_code == 422


def test_viewer_names_a_bad_run_file_and_keeps_the_other_tabs(tmp_path):
    from test_viewer import make_run

    run = make_run(tmp_path / "run", n=10)
    with open(run / "candidates.jsonl", "a") as f:
        f.write('{"id": "broken", "instruction": \n')
    (run / "models" / "m1").mkdir()
    (run / "models" / "m1" / "humback_train.json").write_text("{not json")
    c = client(run)
    bad = c.get("/api/candidates")
    assert bad.status_code == 422 and "candidates.jsonl" in bad.json()["error"]
    assert c.get("/api/funnel").status_code == 422
    curves = c.get("/api/curves")
    assert curves.status_code == 200 and "m0" in curves.json()["loss"]
    assert any("m1/humback_train.json" in p for p in curves.json()["problems"])
    assert c.get("/api/eval").status_code == 200
    (run / "eval" / "metrics.json").write_text("[]")
    assert c.get("/api/eval").status_code == 422 and "metrics.json" in c.get("/api/eval").json()["error"]


def test_viewer_shows_an_empty_candidates_file(tmp_path):
    from test_viewer import make_run

    run = make_run(tmp_path / "run", n=10)
    (run / "candidates.jsonl").write_text("")
    c = client(run)
    page = c.get("/api/candidates")
    assert page.status_code == 200 and page.json()["total"] == 0
    assert c.get("/api/funnel").status_code == 200

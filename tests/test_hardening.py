"""Hostile inputs, careless paths and shared secrets: each case loses nothing and stops nothing (or stops
with one clear line). Fixtures are written here for the project."""

import gzip
import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from humback.config import ConfigError, EngineConfig, RunConfig, SegmentConfig
from humback.data.extract import page_blocks
from humback.data.readers import Problems, iter_documents
from humback.data.seed import seed_pairs
from humback.data.segment import segment
from humback.records import RecordError, RowWriter, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
TEXT = (
    "Volcanoes erupt when magma rises through the crust and the gases dissolved in it come out of solution. "
    "Runny basaltic magma lets bubbles escape, so its eruptions are mostly gentle rivers of glowing lava. "
    "Sticky magma rich in silica traps the gas until the pressure becomes enormous and shatters the rock. "
    "The resulting explosive eruptions throw columns of ash and pumice far up into the stratosphere."
)


def humback(*args, cwd=ROOT, env=None):
    return subprocess.run(
        [sys.executable, "-m", "humback.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=300,
        env=env,
    )


def one_line_error(proc, code, *fragments):
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in proc.stderr, proc.stderr


HOSTILE_LINES = {
    "malformed_json": [
        '{"id": "n", "text": ' + "1" * 5000 + "}",
        "[" * 100_000,
    ],  # 4,300+ digits; deep nesting
    "invalid_unicode": ['{"id": "s", "text": "lava \\ud800 flows"}'],  # valid JSON, not writable UTF-8
}


def test_hostile_json_lines_are_counted_and_skipped_or_strict(tmp_path):
    lines = [line for group in HOSTILE_LINES.values() for line in group] + [
        json.dumps({"id": "ok", "text": TEXT})
    ]
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes("\n".join(lines).encode() + b"\n" + b'{"id": "u", "text": "caf\xe9"}\n')
    logs = []
    stats = segment(corpus, tmp_path / "s.jsonl", SegmentConfig(min_chars=200), log=logs.append)
    assert stats["rows"] == 1
    assert stats["bad_input"] == {"malformed_json": 2, "invalid_unicode": 1, "invalid_utf8": 1}
    assert any("c.jsonl:1" in line and "ValueError" in line for line in logs)
    assert any("c.jsonl:2" in line and "RecursionError" in line for line in logs)
    with pytest.raises(RecordError, match=r"c.jsonl:1: .*not valid JSON"):
        segment(corpus, tmp_path / "t.jsonl", SegmentConfig(min_chars=200, strict=True), log=logs.append)
    # The same lines in a stage input (read_jsonl) are one located error each, never a traceback.
    for i, line in enumerate(lines[:3], 1):
        (tmp_path / f"in{i}.jsonl").write_text(line + "\n")
        with pytest.raises(RecordError, match=rf"in{i}.jsonl:1: "):
            list(read_jsonl(tmp_path / f"in{i}.jsonl"))


def test_byte_caps_apply_while_reading(tmp_path):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    c = tmp_path / "c"
    c.mkdir()
    huge = json.dumps({"id": "big", "text": "lava " * 400_000})  # a 2 MB line
    (c / "a.jsonl").write_text(huge + "\n" + json.dumps({"id": "ok", "text": TEXT}) + "\n")
    (c / "big.html").write_text("<html><body><h1>Big</h1><p>" + "lava " * 400_000 + "</p></body></html>")
    # A 2 MB body stored gzip-encoded in a few KB: read at most the cap, however far it would inflate.
    page = b"<html><body><h1>Bomb</h1><p>" + b" " * 2_000_000 + b"</p></body></html>"
    with open(c / "w.warc.gz", "wb") as f:
        w = WARCWriter(f, gzip=True)
        http = StatusAndHeaders(
            "200 OK", [("Content-Type", "text/html"), ("Content-Encoding", "gzip")], protocol="HTTP/1.1"
        )
        w.write_record(
            w.create_warc_record(
                "https://bomb.example/",
                "response",
                payload=io.BytesIO(gzip.compress(page)),
                http_headers=http,
            )
        )
    assert (c / "w.warc.gz").stat().st_size < 50_000
    stats = segment(
        c, tmp_path / "s.jsonl", SegmentConfig(min_chars=200, max_record_bytes=1_000_000), log=lambda s: None
    )
    assert stats["bad_input"] == {"document_too_large": 3} and stats["rows"] == 1


def test_truncated_zstd_is_reported(tmp_path):
    import zstandard

    data = zstandard.ZstdCompressor().compress(
        "".join(
            json.dumps({"id": f"d{i}", "text": f"{TEXT} Number {i}."}) + "\n" for i in range(200)
        ).encode()
    )
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.jsonl.zst").write_bytes(data[: len(data) - 30])
    problems = Problems(log=lambda s: None)
    list(iter_documents(tmp_path / "c", problems=problems))
    assert problems.counts == {"truncated_file": 1}
    (tmp_path / "c" / "a.jsonl.zst").write_bytes(data)  # whole: no problem, every row
    problems = Problems(log=lambda s: None)
    assert len(list(iter_documents(tmp_path / "c", problems=problems))) == 200 and not problems.counts


def test_hostile_html_is_linear_and_never_raises(tmp_path):
    unit = "<p>" + TEXT + "</p>"
    pages = {
        "nested_div": "<html><body><h1>T</h1>"
        + "<div>" * 100_000
        + unit
        + "</div>" * 100_000
        + "</body></html>",
        "unclosed_h1": "<html><body>" + "<h1>x" * 50_000 + unit + "</body></html>",
        "nbsp": "<html><body><h1>T</h1><p>" + "&nbsp;" * 170_000 + TEXT + "</p></body></html>",
        "many_headers": "<html><body>"
        + "".join(f"<h{i % 6 + 1}>h{i}</h{i % 6 + 1}>{unit}" for i in range(2500))
        + "</body></html>",
        "marked_section": "<html><body><h1>T</h1><![foo[ x " + unit + "</body></html>",
    }
    for name, html in pages.items():
        for extractor in ("trafilatura", "resiliparse", "none"):
            start = time.perf_counter()
            try:
                page_blocks(html, extractor)
            except Exception as e:  # noqa: BLE001 (segment counts these; none may take long to say so)
                assert type(e).__name__ in ("HTMLTooDeep", "ParserRejectedMarkup"), (name, extractor, e)
            # Hours before (quadratic walks); well under 2 s per MB here. Generous for a loaded CI machine.
            assert time.perf_counter() - start < 15, (name, extractor)
    (tmp_path / "c").mkdir()
    for name, html in pages.items():
        (tmp_path / "c" / f"{name}.html").write_text(html)
    stats = segment(
        tmp_path / "c",
        tmp_path / "s.jsonl",
        SegmentConfig(min_chars=200, extractor="none"),
        log=lambda s: None,
    )
    assert stats["bad_input"].get("unparseable_html") == 1  # the marked section, counted with its file


def test_seed_inputs_that_used_to_crash(tmp_path):
    (tmp_path / "long.csv").write_text("instruction,response\n" + "Why? " * 40_000 + ",Because.\nQ,A\n")
    assert seed_pairs(tmp_path / "long.csv", tmp_path / "o.jsonl", log=lambda s: None)["rows"] == 2
    (tmp_path / "null.jsonl").write_text(
        json.dumps({"instruction": None, "response": "x"})
        + "\n"
        + json.dumps({"instruction": ["a"], "response": "x"})
        + "\n"
        + json.dumps({"instruction": "Q", "response": "A"})
        + "\n"
    )
    stats = seed_pairs(tmp_path / "null.jsonl", tmp_path / "o.jsonl", log=lambda s: None)
    assert stats["rows"] == 1 and stats["drops"]["empty_text"] == 2
    (tmp_path / "dup.jsonl").write_text(
        "".join(json.dumps({"id": "1", "instruction": f"Q{i}", "response": "A"}) + "\n" for i in range(2))
    )
    stats = seed_pairs(tmp_path / "dup.jsonl", tmp_path / "o.jsonl", log=lambda s: None)
    assert stats["rows"] == 1 and stats["bad_input"] == {"duplicate_id": 1}
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    one_line_error(
        humback("seed", "--source", str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "o.jsonl")),
        2,
        "bad.parquet",
        "not a readable Parquet file",
    )


def test_stage_inputs_duplicate_ids_and_bad_bytes(tmp_path):
    from humback.augment import augment
    from humback.config import AugmentConfig
    from humback.rowloop import LocalRunner

    (tmp_path / "seg.jsonl").write_text(
        json.dumps({"id": "1", "text": "a"}) + "\n" + json.dumps({"id": "1", "text": "b"}) + "\n"
    )

    class Untouched:  # the error must come before any generation
        fingerprint = model = backend = "none"
        chunk_size = 8

        def generate(self, *a, **k):
            raise AssertionError("generated despite a bad input")

    with pytest.raises(RecordError, match=r"seg.jsonl:2: duplicate id '1' \(first at seg.jsonl:1\)"):
        augment(tmp_path / "seg.jsonl", LocalRunner(Untouched()), tmp_path / "cand.jsonl", AugmentConfig())
    (tmp_path / "bad.jsonl").write_bytes(b'{"id": "a", "text": "caf\xe9"}\n')
    one_line_error(
        humback(
            "augment",
            "--model",
            "default",
            "--segments",
            str(tmp_path / "bad.jsonl"),
            "--out",
            str(tmp_path / "c.jsonl"),
        ),
        2,
        "bad.jsonl:1: invalid UTF-8",
    )


def test_partial_files_recover_and_follow_their_settings(tmp_path):
    out = tmp_path / "scored.jsonl"
    w = RowWriter(out, {"judge": "A"})
    w.write([{"id": "1", "x": 1}, {"id": "2", "x": 2}])
    w.close()
    with open(out.with_name("scored.jsonl.partial"), "a") as f:
        f.write('[1, 2]\n{"id": "3", "x": 3}\n{"id": "4", "x"')  # a complete non-object line, then a torn one
    w = RowWriter(out, {"judge": "A"})
    assert w.done == {"1", "2"}  # the rows after the foreign line are redone, none lost
    w.close()
    logs = []
    w = RowWriter(out, {"judge": "B"}, log=logs.append)  # resumed with another judge: start over
    assert w.done == set() and "other settings" in logs[0]
    w.write([{"id": "9"}])
    assert len(w.finish(order=["9"])) == 1 and [r["id"] for r in read_jsonl(out)] == ["9"]
    assert not out.with_name("scored.jsonl.partial.settings.json").exists()


def test_corrupt_manifest_and_foreign_folders(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text('{"stages": {"seed": ')
    one_line_error(humback("status", str(run)), 2, "manifest.json is corrupt")
    one_line_error(humback("report", str(run)), 2, "manifest.json is corrupt")
    # A run into a folder humback did not make.
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    from humback.pipeline import StageError, run_pipeline

    with pytest.raises(StageError, match="did not create"):
        run_pipeline(RunConfig(), home, log=lambda s: None)
    assert (home / "notes.txt").read_text() == "mine"


def test_one_process_per_run_folder(tmp_path):
    from humback.files import Busy, folder_lock

    with folder_lock(tmp_path / ".humback.lock", wait=False, what="run"):
        code = (
            "import sys; from humback.files import Busy, folder_lock\n"
            f"try:\n    folder_lock({str(tmp_path / '.humback.lock')!r}, wait=False).__enter__()\n"
            "except Busy as e:\n    print(e); sys.exit(7)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        assert proc.returncode == 7 and "another humback process" in proc.stdout
        assert f"pid {os.getpid()}" in proc.stdout  # the holder is named
    with folder_lock(tmp_path / ".humback.lock", wait=False):  # released: free again
        pass
    assert Busy.exit_code == 3


def test_report_ignores_copied_iteration_folders(tmp_path):
    from humback.rundir import RunDir

    for name in ("iter1", "iter1.bak", "iter2-old", "iterX"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "scored.jsonl").write_text("")
    assert RunDir(tmp_path).iterations() == [1]


def test_mistyped_local_paths_are_not_hub_ids(tmp_path, monkeypatch):
    from humback.models import ModelError, resolve_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model("runs/m0")
    with pytest.raises(RecordError, match="not found"):
        list(iter_documents("runs/crawl"))
    assert resolve_model("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"  # still a hub id


# ---------------------------------------------------------------- secrets


def test_openai_urls_are_checked_and_redacted():
    for bad, why in (
        ("http://api.example.com/v1", "plain http"),
        ("https://u:secret@api.example.com/v1", "credentials"),
        ("ftp://x/v1", "not an http"),
    ):
        with pytest.raises(ValueError, match=why):
            EngineConfig(backend="openai", model="m", base_url=bad)
    with pytest.raises(ValueError, match="_API_KEY"):
        EngineConfig(
            backend="openai", model="m", base_url="https://a.example/v1", api_key_env="AWS_SECRET_ACCESS_KEY"
        )
    assert EngineConfig(backend="openai", model="m", base_url="http://127.0.0.1:8000/v1").base_url
    cfg = RunConfig.model_validate(
        {
            "generation": {
                "judge": {"backend": "openai", "model": "m", "base_url": "https://a.example/v1?token=secret"}
            }
        }
    )
    assert "secret" not in json.dumps(cfg.model_dump()) and "secret" not in str(
        cfg.generation.role("judge").identity()
    )
    assert cfg.generation.role("judge").base_url.endswith(
        "?token=secret"
    )  # the engine still gets the real one


def test_keys_go_only_where_they_are_paired(monkeypatch):
    from humback.generation.openai_api import api_key_for

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("TOGETHER_API_KEY", "sk-together")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("TOGETHER_BASE_URL", raising=False)
    assert api_key_for(None, "OPENAI_API_KEY") == "sk-openai"  # OpenAI's own endpoint
    assert api_key_for("http://127.0.0.1:8000/v1", "OPENAI_API_KEY") is None  # a local server gets no key
    with pytest.raises(ConfigError, match="not paired"):  # a shared recipe pointing the key elsewhere
        api_key_for("https://collector.example/v1", "OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="not paired"):
        api_key_for("https://collector.example/v1", "TOGETHER_API_KEY")
    monkeypatch.setenv("TOGETHER_BASE_URL", "https://api.together.example/v1")
    assert api_key_for("https://api.together.example/v1/", "TOGETHER_API_KEY") == "sk-together"
    with pytest.raises(ConfigError, match="TOGETHER_BASE_URL"):
        api_key_for("https://collector.example/v1", "TOGETHER_API_KEY")


def test_empty_replies_are_asked_again(tmp_path):
    from humback.generation.base import SamplingParams
    from humback.generation.cache import CachedGenerator, ResponseCache

    class Flaky:
        model, fingerprint, chunk_size, backend = "flaky", "flaky:0", 8, "fake"
        calls = 0

        def generate(self, prompts, params, seeds=None):
            Flaky.calls += 1
            return ["" if Flaky.calls == 1 else "an answer" for _ in prompts]

    gen = CachedGenerator(Flaky(), ResponseCache(tmp_path / "c.sqlite"))
    prompt = [[{"role": "user", "content": "hi"}]]
    params = SamplingParams(0.0, 1.0, 8, 0)
    assert gen.generate(prompt, params, [1]) == [""]
    assert gen.generate(prompt, params, [1]) == ["an answer"]
    assert gen.generate(prompt, params, [1]) == ["an answer"] and Flaky.calls == 2


def test_edited_corpus_reruns_segment(tmp_path):
    from humback.pipeline import source_fingerprint

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text(json.dumps({"text": TEXT}) + "\n")
    before = source_fingerprint(str(corpus))
    (corpus / "a.jsonl").write_text(json.dumps({"text": TEXT + " Edited."}) + "\n")
    assert source_fingerprint(str(corpus)) != before
    assert source_fingerprint("demo") == "demo" and source_fingerprint("org/dataset") == "org/dataset"


# -------------------------------------------------------- fuzz (the long version: bench/fuzz_inputs.py)

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TAGS = [
    "div",
    "p",
    "h1",
    "h2",
    "h3",
    "li",
    "ul",
    "table",
    "td",
    "span",
    "script",
    "style",
    "article",
    "br",
    "![CDATA[",
]


@st.composite
def html_pages(draw):
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(TAGS).map(lambda t: f"<{t}>"),
                st.sampled_from(TAGS).map(lambda t: f"</{t}>"),
                st.text(max_size=40),
                st.sampled_from(["&nbsp;", "&#0;", "&#xD800;", "<!--", "-->", "<![foo[", "\x00", "\ud800"]),
            ),
            max_size=200,
        )
    )
    return "".join(parts)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(html_pages(), st.sampled_from(["trafilatura", "resiliparse", "none"]))
def test_fuzz_html_never_escapes(html, extractor):
    try:
        title, blocks = page_blocks(html, extractor)
    except Exception as e:  # noqa: BLE001
        assert type(e).__name__ in ("HTMLTooDeep", "ParserRejectedMarkup"), e
        return
    assert isinstance(title, str) and all(isinstance(t, str) and 0 <= lv <= 6 for lv, t in blocks)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from(
                [b"[" * 5000, b'{"text": ' + b"9" * 5000 + b"}", b'{"text": "\\udc00"}', b"\xff\xfe"]
            ),
        ),
        max_size=20,
    )
)
def test_fuzz_corpus_bytes_never_escape(tmp_path_factory, chunks):
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "a.jsonl").write_bytes(b"\n".join(chunks))
    (folder / "b.jsonl.gz").write_bytes(
        gzip.compress(b"\n".join(chunks))[: random.Random(len(chunks)).randint(0, 200)]
    )
    (folder / "c.html").write_bytes(b"".join(chunks))
    try:
        segment(
            folder, folder.parent / f"{folder.name}.jsonl", SegmentConfig(min_chars=1), log=lambda s: None
        )
    except RecordError as e:
        assert "passed the filters" in str(e)  # nothing usable in random bytes is an answer, not a crash


def test_exit_codes_follow_the_error_class():
    from humback.errors import EnvironmentFault, HumbackError
    from humback.evaluate import EvalError
    from humback.files import Busy
    from humback.generation.base import GenerationError
    from humback.models import ModelError
    from humback.pipeline import StageError
    from humback.training.examples import TrainingDataError

    for cls in (ConfigError, EvalError, ModelError, RecordError, StageError, TrainingDataError):
        assert issubclass(cls, HumbackError) and cls.exit_code == 2
    for cls in (GenerationError, Busy):
        assert issubclass(cls, EnvironmentFault) and cls.exit_code == 3

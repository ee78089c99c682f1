"""humback writes only files it creates: planted symbolic links are refused at every temporary and final
path of every writer, folders it did not make are never removed, two writers never share an output, and a
full disk is one line with exit 3 and no temporary file left behind."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from humback.config import SegmentConfig
from humback.data.segment import segment
from humback.files import DiskFull, UnsafePath, atomic_write, folder_lock, remove_owned, write_via
from humback.records import RowWriter, ShardWriter, read_jsonl, write_jsonl
from humback.rundir import RunDir, writer_lock
from test_hardening import TEXT, humback, one_line_error

MORE = (
    "Geologists watch for swelling ground, small earthquakes and changing gas output before an eruption. "
    "Satellites measure how the flanks of a volcano rise by a few centimetres as fresh magma collects below."
)
PAGE = f"<html><body><h1>Volcanoes</h1><p>{TEXT}</p><p>{MORE}</p></body></html>"


@pytest.fixture
def victim(tmp_path):
    """A file outside the run that a planted link points at: it must never change."""
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir()
    path.write_text("do not touch")
    return path


def untouched(victim: Path) -> bool:
    return victim.read_text() == "do not touch"


def corpus(tmp_path: Path) -> Path:
    c = tmp_path / "corpus"
    c.mkdir(exist_ok=True)
    (c / "a.html").write_text(PAGE)
    return c


def test_atomic_write_and_write_via_refuse_a_link_at_the_target(tmp_path, victim):
    link = tmp_path / "manifest.json"
    link.symlink_to(victim)
    with pytest.raises(UnsafePath, match="symbolic link"):
        atomic_write(link, "{}")
    with pytest.raises(UnsafePath, match="symbolic link"):
        write_via(link, lambda p: p.write_text("x"))
    assert untouched(victim) and link.is_symlink()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp file left


def test_shard_writer_ignores_old_temp_names_and_refuses_a_linked_output(tmp_path, victim):
    out = tmp_path / "segments.jsonl"
    (tmp_path / "segments.jsonl.tmp").symlink_to(victim)  # the temp name of earlier versions
    write_jsonl(out, [{"id": "1"}])
    assert untouched(victim) and not out.is_symlink() and [r["id"] for r in read_jsonl(out)] == ["1"]
    out.unlink()
    out.symlink_to(victim)
    with pytest.raises(UnsafePath):
        write_jsonl(out, [{"id": "1"}])
    assert untouched(victim)
    # A folder output: a user's folder named like the old temp folder is left alone.
    mine = tmp_path / "shards.tmp"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    w = ShardWriter(tmp_path / "shards", shard_size=1)
    for i in range(3):
        w.write({"id": str(i)})
    w.finish()
    assert (mine / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        ".humback-owned",
        "00000.jsonl",
        "00001.jsonl",
        "00002.jsonl",
    ]
    assert len(list(read_jsonl(tmp_path / "shards"))) == 3
    # The output folder itself as a link to someone's folder: refused.
    (tmp_path / "linked").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(UnsafePath):
        ShardWriter(tmp_path / "linked")


def test_a_killed_writers_temp_files_are_swept_and_nothing_else(tmp_path):
    from humback.files import temp_path

    out = tmp_path / "segments.jsonl"
    stale_file, stale_dir = temp_path(out), temp_path(tmp_path / "shards", folder=True)
    (stale_dir / "00000.jsonl").write_text("{}\n")
    mine = [tmp_path / ".segments.jsonl.notes.tmp", tmp_path / ".segments.jsonl.ABCDEFGH.tmp.bak"]
    for p in mine:
        p.write_text("mine")
    write_jsonl(out, [{"id": "1"}])
    ShardWriter(tmp_path / "shards").finish()
    assert not stale_file.exists() and not stale_dir.exists() and all(p.read_text() == "mine" for p in mine)


def test_row_writer_refuses_links_at_partial_settings_and_output(tmp_path, victim):
    for name in ("scored.jsonl.partial", "scored.jsonl.partial.settings.json", "scored.jsonl"):
        d = tmp_path / name.replace(".", "_")
        d.mkdir()
        (d / name).symlink_to(victim)
        with pytest.raises(UnsafePath, match="symbolic link"):
            RowWriter(d / "scored.jsonl", {"judge": "A"})
        assert untouched(victim)
    # A link planted after the writer opened: publishing refuses it too.
    w = RowWriter(tmp_path / "c.jsonl", {})
    w.write([{"id": "1"}])
    (tmp_path / "c.jsonl").symlink_to(victim)
    with pytest.raises(UnsafePath):
        w.finish(order=["1"])
    assert untouched(victim)


def test_segment_refuses_a_linked_output_and_leaves_the_target(tmp_path, victim):
    (tmp_path / "segments.jsonl").symlink_to(victim)
    one_line_error(
        humback(
            "segment",
            "--corpus",
            str(corpus(tmp_path)),
            "--out",
            str(tmp_path / "segments.jsonl"),
            "--min-chars",
            "100",
        ),
        2,
        "symbolic link",
    )
    assert untouched(victim)


def test_report_refuses_a_linked_plot(tmp_path, victim):
    run = tmp_path / "run"
    (run / "report").mkdir(parents=True)
    (run / "manifest.json").write_text(
        json.dumps(
            {
                "name": "r",
                "stages": {
                    "segment": {
                        "status": "done",
                        "stats": {"rows": 3, "funnel": {"documents": 2, "segments": 5}},
                    }
                },
            }
        )
    )
    (run / "report" / "funnel.png").symlink_to(victim)
    one_line_error(humback("report", str(run)), 2, "funnel.png is a symbolic link")
    assert untouched(victim)
    (run / "report" / "funnel.png").unlink()
    (run / "report" / "index.html").symlink_to(victim)
    one_line_error(humback("report", str(run)), 2, "index.html is a symbolic link")
    assert untouched(victim)


def curated_run(root: Path) -> Path:
    (root / "iter1").mkdir(parents=True)
    row = {"id": "s1", "instruction": "How do volcanoes erupt?", "response": TEXT, "score": 4.5}
    (root / "iter1" / "selected.jsonl").write_text(json.dumps(row) + "\n")
    (root / "iter1" / "scored.jsonl").write_text(json.dumps(row) + "\n")
    (root / "candidates.jsonl").write_text(json.dumps(row) + "\n")
    (root / "manifest.json").write_text(
        json.dumps({"name": "r", "stages": {"curate:1": {"status": "done", "stats": {"selected": 1}}}})
    )
    return root


def test_export_refuses_a_data_folder_that_links_elsewhere(tmp_path, victim):
    run = curated_run(tmp_path / "run")
    out = tmp_path / "exp"
    out.mkdir()
    (out / "data").symlink_to(victim.parent, target_is_directory=True)
    (victim.parent / "train.jsonl").write_text("theirs")
    for fmt in ("jsonl", "parquet"):
        one_line_error(humback("export", str(run), "--out", str(out), "--format", fmt), 2, "symbolic link")
    assert (victim.parent / "train.jsonl").read_text() == "theirs" and untouched(victim)
    assert not (victim.parent / "train.parquet").exists()
    (out / "data").unlink()
    (out / "README.md").symlink_to(victim)
    one_line_error(humback("export", str(run), "--out", str(out)), 2, "symbolic link")
    assert untouched(victim)


def test_train_never_replaces_a_folder_it_did_not_make(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"instruction": "Why?", "response": TEXT}) + "\n")
    mine = tmp_path / "mine"
    (mine / "important").mkdir(parents=True)
    (mine / "important" / "notes.txt").write_text("mine")
    (mine / "README").write_text("mine")
    args = ("train", "--direction", "forward", "--data", str(pairs), "--model", "default")
    one_line_error(humback(*args, "--out", str(mine)), 2, "did not make")
    assert (mine / "important" / "notes.txt").read_text() == "mine" and (
        mine / "README"
    ).read_text() == "mine"
    # A folder of the user's named <out>.tmp: refused before any training too.
    (tmp_path / "model.tmp").mkdir()
    (tmp_path / "model.tmp" / "notes.txt").write_text("mine")
    one_line_error(
        humback(*args, "--out", str(tmp_path / "model")), 2, "model.tmp is a folder humback did not make"
    )
    assert (tmp_path / "model.tmp" / "notes.txt").read_text() == "mine"


def test_remove_owned_needs_the_marker_or_a_legacy_sign(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "x").write_text("1")
    with pytest.raises(UnsafePath):
        remove_owned(folder)
    (folder / "humback_train.json").write_text("{}")
    remove_owned(folder, also=("humback_train.json",))
    assert not folder.exists()
    link = tmp_path / "l"
    link.symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UnsafePath):
        remove_owned(link)


def test_a_second_writer_into_the_same_output_exits_3_naming_the_holder(tmp_path):
    c = corpus(tmp_path)
    out = tmp_path / "out" / "segments.jsonl"
    out.parent.mkdir()
    with writer_lock(out):
        proc = humback("segment", "--corpus", str(c), "--out", str(out), "--min-chars", "100")
    one_line_error(proc, 3, "another humback process", f"pid {os.getpid()}")
    assert not out.exists()
    # Inside a run folder, a stage command takes the run's own lock: the one `humback run` holds.
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text('{"stages": {}}')
    (run / "candidates.jsonl").write_text(
        json.dumps({"id": "1", "instruction": "Why?", "response": TEXT}) + "\n"
    )
    with folder_lock(RunDir(run).lock_path, wait=False):
        for args in (
            (
                "curate",
                "--judge",
                "default",
                "--candidates",
                str(run / "candidates.jsonl"),
                "--out-dir",
                str(run / "iter1"),
            ),
            ("segment", "--corpus", str(c), "--out", str(run / "segments.jsonl"), "--min-chars", "100"),
            ("report", str(run)),
        ):
            one_line_error(humback(*args), 3, "another humback process", str(run))
    proc = humback("segment", "--corpus", str(c), "--out", str(out), "--min-chars", "100")
    assert proc.returncode == 0, proc.stderr


class FullDisk:
    """A text file that takes `room` characters and then fails as a full disk does."""

    def __init__(self, path, room: int):
        self._f, self.room = open(path, "w", encoding="utf-8"), room  # noqa: SIM115

    def write(self, text: str) -> int:
        self.room -= len(text)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._f.write(text)

    def flush(self):
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._f.flush()

    def fileno(self):
        return self._f.fileno()

    @property
    def closed(self):
        return self._f.closed

    def close(self):
        self.flush()
        self._f.close()


def test_a_full_disk_is_exit_3_naming_the_path_and_leaves_no_temp_file(tmp_path, monkeypatch, capsys):
    from humback import cli, records

    c = corpus(tmp_path)
    for i in range(20):
        (c / f"p{i}.html").write_text(
            PAGE.replace("Volcanoes", f"Volcano {i}").replace("magma", f"magma {i}")
        )
    out = tmp_path / "o" / "segments.jsonl"
    real_open = open
    monkeypatch.setattr(
        records,
        "open",
        lambda p, mode="r", **kw: (
            FullDisk(p, 300) if "w" in mode or "x" in mode else real_open(p, mode, **kw)
        ),
        raising=False,
    )
    with pytest.raises(DiskFull, match="no space left"):
        segment(c, out, SegmentConfig(min_chars=100, near_duplicate_threshold=None))
    assert list(out.parent.iterdir()) == []  # no half output, no temp file
    assert cli.main(["segment", "--corpus", str(c), "--out", str(out), "--min-chars", "100"]) == 3
    err = capsys.readouterr().err
    assert "no space left on the device while writing" in err and "Traceback" not in err
    assert [p.name for p in out.parent.iterdir()] == [".humback.lock"]  # the lock; no half output, no temp
    monkeypatch.undo()
    assert (
        cli.main(["segment", "--corpus", str(c), "--out", str(out), "--min-chars", "100"]) == 0
    )  # rerun: whole
    ref = tmp_path / "ref.jsonl"
    assert cli.main(["segment", "--corpus", str(c), "--out", str(ref), "--min-chars", "100"]) == 0
    assert list(read_jsonl(out)) == list(read_jsonl(ref)) and ref.stat().st_size > 1000


def test_curate_checks_its_input_before_loading_the_judge(tmp_path):
    for row, problem in (
        ({"id": "1", "instruction": 12345, "response": TEXT}, "key 'instruction' must be a string"),
        ({"id": [1], "instruction": "Why?", "response": TEXT}, "key 'id' must be a string"),
    ):
        bad = tmp_path / "c.jsonl"
        bad.write_text(json.dumps(row) + "\n")
        # The judge does not exist: the input error comes first, so no model was looked for.
        one_line_error(
            humback(
                "curate",
                "--judge",
                str(tmp_path / "no-such-model"),
                "--candidates",
                str(bad),
                "--out-dir",
                str(tmp_path / "iter1"),
            ),
            2,
            "c.jsonl:1",
            problem,
        )


def test_a_damaged_response_cache_is_named_with_the_fix(tmp_path):
    from humback.generation.cache import CacheError, ResponseCache

    good = ResponseCache(tmp_path / "responses.sqlite")
    good.put_many({f"k{i}": "x" * 500 for i in range(200)})
    good.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    good.db.close()
    data = (tmp_path / "responses.sqlite").read_bytes()
    for name, content in (("truncated", data[: len(data) // 3]), ("garbage", b"not a database" * 100)):
        path = tmp_path / name / "responses.sqlite"
        path.parent.mkdir()
        path.write_bytes(content)
        with pytest.raises(CacheError, match=rf"{name}/responses.sqlite is damaged .*move it aside"):
            cache = ResponseCache(path)
            cache.get_many([f"k{i}" for i in range(200)])
    assert CacheError.exit_code == 2


def test_lock_file_is_never_written_through_a_link(tmp_path, victim):
    (tmp_path / ".humback.lock").symlink_to(victim)
    with pytest.raises(UnsafePath), folder_lock(tmp_path / ".humback.lock"):
        pass
    assert untouched(victim)

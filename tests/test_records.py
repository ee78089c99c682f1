import json

import pytest

from humback.records import RecordError, RowWriter, read_jsonl, write_jsonl


def test_rowwriter_recovers_torn_tail_and_never_repeats(tmp_path):
    out = tmp_path / "rows.jsonl"
    w = RowWriter(out)
    w.write([{"id": "a", "v": 1}, {"id": "b", "v": 2}])
    w.close()
    # A kill mid-write leaves a torn last line.
    with open(out.with_name("rows.jsonl.partial"), "a") as f:
        f.write('{"id": "c", "v"')
    w = RowWriter(out)
    assert w.done == {"a", "b"}
    w.write([{"id": "b", "v": 99}, {"id": "c", "v": 3}])  # b is already there: skipped
    assert [r["id"] for r in w.finish(order=["c", "a", "b"])] == ["c", "a", "b"]
    rows = list(read_jsonl(out))
    assert [r["id"] for r in rows] == ["c", "a", "b"] and rows[2]["v"] == 2
    assert not out.with_name("rows.jsonl.partial").exists()


def test_finish_with_missing_rows_is_an_error(tmp_path):
    w = RowWriter(tmp_path / "x.jsonl")
    w.write([{"id": "a"}])
    with pytest.raises(RecordError, match="1 rows missing"):
        w.finish(order=["a", "b"])


def test_read_jsonl_locates_bad_lines(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": 1}\n\n{"id": 2\n')
    with pytest.raises(RecordError, match=r"bad.jsonl:3: not valid JSON"):
        list(read_jsonl(p))
    p.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(RecordError, match=r"bad.jsonl:2: expected a JSON object"):
        list(read_jsonl(p))
    p.write_text('{"text": "x"}\n')
    with pytest.raises(RecordError, match=r"bad.jsonl:1: missing key\(s\) id"):
        list(read_jsonl(p, required=("id",)))
    with pytest.raises(RecordError, match="does not exist"):
        list(read_jsonl(tmp_path / "none.jsonl"))


def test_read_folder_of_shards(tmp_path):
    write_jsonl(tmp_path / "d" / "00001.jsonl", [{"id": "b"}])
    write_jsonl(tmp_path / "d" / "00000.jsonl", [{"id": "a"}])
    assert [r["id"] for r in read_jsonl(tmp_path / "d")] == ["a", "b"]
    assert json.loads((tmp_path / "d" / "00000.jsonl").read_text()) == {"id": "a"}

import json

import pytest

from humback.data.seed import first_turn_pair, seed
from humback.data.segment import html_sections, segment, text_windows
from humback.records import RecordError, read_jsonl


def _tree(replies, lang="en", root_role="prompter"):
    return {"message_tree_id": "t1", "prompt": {"message_id": "p", "role": root_role, "lang": lang, "text": "Q?",
                                                "replies": replies}}


def _reply(mid, rank, text="A.", role="assistant", **kw):
    return {"message_id": mid, "role": role, "rank": rank, "text": text, "replies": [], **kw}


def test_first_turn_rules():
    deep = _reply("r0", 0, replies=[{"message_id": "q2", "role": "prompter", "text": "more?",
                                     "replies": [_reply("r00", 0, "deep answer")]}])
    pair, why = first_turn_pair(_tree([_reply("r1", 1, "second"), deep]), "en")
    assert why == "kept" and pair["id"] == "r0" and pair["response"] == "A."  # rank 0 of the first turn only
    assert first_turn_pair(_tree([_reply("r0", 0)], lang="de"), "en")[1] == "language"
    assert first_turn_pair(_tree([_reply("r0", 0)], root_role="assistant"), "en")[1] == "root_not_prompter"
    assert first_turn_pair(_tree([_reply("r1", 1)]), "en")[1] == "no_rank0_reply"
    assert first_turn_pair(_tree([_reply("r0", 0, deleted=True)]), "en")[1] == "reply_deleted"
    assert first_turn_pair(_tree([_reply("r0", 0, role="prompter")]), "en")[1] == "no_assistant_reply"


def test_demo_seed_counts(tmp_path):
    stats = seed("demo", tmp_path / "seed.jsonl")
    assert stats["rows"] == 46 and stats["trees"] == 54
    assert stats["drops"] == {"language": 4, "no_assistant_reply": 1, "reply_deleted": 1,
                              "reply_review_failed": 1, "reply_synthetic": 1}
    rows = list(read_jsonl(tmp_path / "seed.jsonl"))
    assert len({r["id"] for r in rows}) == 46
    # The follow-up turns of multi-turn trees never become seed pairs.
    assert not any(r["instruction"].startswith(("I like Biscuit", "And for hard-boiled")) for r in rows)
    # Same input, same output, byte for byte; a different cap keeps a deterministic prefix.
    first = (tmp_path / "seed.jsonl").read_bytes()
    seed("demo", tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == first
    seed("demo", tmp_path / "ten.jsonl", max_seed=10)
    assert [json.loads(x)["id"] for x in (tmp_path / "ten.jsonl").read_text().splitlines()] == [r["id"] for r in rows[:10]]


def test_seed_errors(tmp_path):
    with pytest.raises(RecordError, match="not found"):
        seed(tmp_path / "missing.jsonl", tmp_path / "o.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": {}}\n{oops\n')
    with pytest.raises(RecordError, match="bad.jsonl:2"):
        seed(bad, tmp_path / "o.jsonl")


HTML = """<html><body><nav><h2>Quick Links</h2><ul><li>Home</li></ul></nav>
<h1>Title</h1><p>Intro.</p>
<h2>Part A</h2><p>Alpha text.</p><h3>Detail</h3><p>Detail text.</p>
<h2>Part B</h2><p>Beta text.</p><script>var x = 1;</script></body></html>"""


def test_html_sections_include_subheaders():
    secs = {"/".join(path): text for path, text in html_sections(HTML)}
    assert secs["Quick Links"] == "Home"
    assert secs["Title/Part A"] == "Alpha text.\nDetail\nDetail text."
    assert secs["Title/Part A/Detail"] == "Detail text."
    assert secs["Title/Part B"] == "Beta text."
    assert secs["Title"].startswith("Intro.\nPart A\nAlpha text.") and "var x" not in secs["Title"]


def test_demo_segment_funnel(tmp_path):
    stats = segment("demo", tmp_path / "seg.jsonl")
    f = stats["funnel"]
    assert f["documents"] == 30 and f["kept"] == stats["rows"] > 50
    assert f["dropped_navigation_header"] > 0 and f["dropped_uppercase_header"] > 0 and f["dropped_empty_header"] > 0
    rows = list(read_jsonl(tmp_path / "seg.jsonl"))
    assert all(600 <= len(r["text"]) <= 3000 for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    assert not any("Subscribe" in r["header_path"][-1] or "Advertisement" == r["header_path"][-1] for r in rows)
    stats2 = segment("demo", tmp_path / "seg2.jsonl", max_segments=10, seed_value=3)
    assert stats2["rows"] == 10 and stats2["funnel"]["dropped_sampling"] == stats["rows"] - 10


def test_jsonl_corpus_windows_and_dedup(tmp_path):
    para = " ".join(f"Sentence number {i} says something different about the topic." for i in range(12))
    other = para.replace("topic", "subject")
    docs = [{"id": "d1", "text": para + "\n\n" + other}, {"id": "d2", "text": para},
            {"id": "d3", "text": "Same line again. " * 40}]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    stats = segment(corpus, tmp_path / "s.jsonl", min_chars=600, max_chars=1000)
    assert stats["rows"] == 2 and stats["funnel"]["dropped_duplicate"] == 1
    assert stats["funnel"]["dropped_repetitive"] == 1
    assert list(text_windows("a\n\nb\n\nc", 3)) == ["a\nb", "c"]  # whole paragraphs, at most 3 chars


def test_empty_corpus_is_a_clear_error(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "too short"}\n')
    with pytest.raises(RecordError, match="no segment .* passed the filters"):
        segment(corpus, tmp_path / "s.jsonl")

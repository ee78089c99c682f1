"""Seed and segment stages on small fixtures written for the project, in every input form."""

import gzip
import io
import json

import pytest

from humback.config import SeedConfig, SegmentConfig
from humback.data.extract import page_blocks
from humback.data.sections import html_sections, text_paragraphs, windows
from humback.data.seed import first_turn_pair, seed_pairs
from humback.data.segment import boilerplate_line, repetitive, segment
from humback.records import RecordError, read_jsonl

# ---------------------------------------------------------------- seed


def _tree(replies, lang="en", root_role="prompter"):
    return {
        "message_tree_id": "t1",
        "prompt": {"message_id": "p", "role": root_role, "lang": lang, "text": "Q?", "replies": replies},
    }


def _reply(mid, rank, text="A.", role="assistant", **kw):
    return {"message_id": mid, "role": role, "rank": rank, "text": text, "replies": [], **kw}


def test_first_turn_rules():
    deep = _reply(
        "r0",
        0,
        replies=[
            {
                "message_id": "q2",
                "role": "prompter",
                "text": "more?",
                "replies": [_reply("r00", 0, "deep answer")],
            }
        ],
    )
    pair, why = first_turn_pair(_tree([_reply("r1", 1, "second"), deep]), "en")
    assert why == "kept" and pair["id"] == "r0" and pair["response"] == "A."  # rank 0 of the first turn only
    assert first_turn_pair(_tree([_reply("r0", 0)], lang="de"), "en")[1] == "language"
    assert first_turn_pair(_tree([_reply("r0", 0)], root_role="assistant"), "en")[1] == "root_not_prompter"
    assert first_turn_pair(_tree([_reply("r1", 1)]), "en")[1] == "no_rank0_reply"
    assert first_turn_pair(_tree([_reply("r0", 0, deleted=True)]), "en")[1] == "reply_deleted"
    assert first_turn_pair(_tree([_reply("r0", 0, role="prompter")]), "en")[1] == "no_assistant_reply"
    low = _reply("r0", 0, labels={"name": ["quality"], "value": [0.3]})
    assert first_turn_pair(_tree([low]), "en", min_quality=0.5)[1] == "low_quality"
    assert first_turn_pair(_tree([low]), "en", min_quality=0.2)[1] == "kept"


def test_demo_seed_counts(tmp_path):
    stats = seed_pairs("demo", tmp_path / "seed.jsonl")
    assert stats["rows"] == 46 and stats["read"] == 54 and stats["format"] == "oasst-trees"
    assert stats["drops"] == {
        "language": 4,
        "no_assistant_reply": 1,
        "reply_deleted": 1,
        "reply_review_failed": 1,
        "reply_synthetic": 1,
    }
    rows = list(read_jsonl(tmp_path / "seed.jsonl"))
    assert len({r["id"] for r in rows}) == 46
    # The follow-up turns of multi-turn trees never become seed pairs.
    assert not any(r["instruction"].startswith(("I like Biscuit", "And for hard-boiled")) for r in rows)
    # Same input, same output, byte for byte; a smaller cap keeps a prefix of the same order.
    first = (tmp_path / "seed.jsonl").read_bytes()
    seed_pairs("demo", tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == first
    seed_pairs("demo", tmp_path / "ten.jsonl", SeedConfig(max_pairs=10))
    assert [r["id"] for r in read_jsonl(tmp_path / "ten.jsonl")] == [r["id"] for r in rows[:10]]


def _flatten(tree):
    """Tree export -> flat message table rows (the hub dataset's form)."""
    out = []

    def walk(msg, parent):
        row = {k: v for k, v in msg.items() if k != "replies"}
        row.update(parent_id=parent, message_tree_id=tree["message_tree_id"])
        out.append(row)
        for r in msg.get("replies", []):
            walk(r, msg["message_id"])

    walk(tree["prompt"], None)
    return out


def test_message_table_jsonl_and_parquet_match_tree_export(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from humback.data.seed import demo_seed_path

    trees = [json.loads(line) for line in demo_seed_path().read_text().splitlines()]
    flat = [row for t in trees for row in _flatten(t)]
    (tmp_path / "msgs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flat))
    cols = [
        "message_id",
        "parent_id",
        "message_tree_id",
        "role",
        "lang",
        "rank",
        "text",
        "deleted",
        "synthetic",
        "review_result",
    ]
    pq.write_table(
        pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in flat]), tmp_path / "msgs.parquet"
    )
    seed_pairs("demo", tmp_path / "a.jsonl")
    for name in ("msgs.jsonl", "msgs.parquet"):
        stats = seed_pairs(tmp_path / name, tmp_path / "b.jsonl")
        assert stats["format"] == "oasst-messages" and stats["rows"] == 46
        a = [(r["id"], r["instruction"], r["response"]) for r in read_jsonl(tmp_path / "a.jsonl")]
        b = [(r["id"], r["instruction"], r["response"]) for r in read_jsonl(tmp_path / "b.jsonl")]
        assert a == b


def test_generic_pair_styles(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "alpaca.jsonl").write_text(
        json.dumps({"instruction": "Translate", "input": "hola", "output": "hello"})
        + "\n"
        + json.dumps({"instruction": "Empty", "output": " "})
        + "\n"
        + "{broken\n"
    )
    stats = seed_pairs(tmp_path / "alpaca.jsonl", tmp_path / "o.jsonl")
    rows = list(read_jsonl(tmp_path / "o.jsonl"))
    assert stats["format"] == "pairs" and [(r["instruction"], r["response"]) for r in rows] == [
        ("Translate\n\nhola", "hello")
    ]
    assert stats["drops"] == {"empty_text": 1} and stats["bad_input"] == {"malformed_json": 1}
    with pytest.raises(RecordError, match=r"alpaca.jsonl:3: not valid JSON"):
        seed_pairs(tmp_path / "alpaca.jsonl", tmp_path / "o.jsonl", SeedConfig(strict=True))

    sharegpt = [
        {
            "id": "s1",
            "conversations": [
                {"from": "system", "value": "be nice"},
                {"from": "human", "value": "Hi?"},
                {"from": "gpt", "value": "Hello!"},
                {"from": "human", "value": "more"},
            ],
        }
    ]
    (tmp_path / "sg.json").write_text(json.dumps(sharegpt))
    seed_pairs(tmp_path / "sg.json", tmp_path / "o.jsonl")
    assert [(r["id"], r["instruction"], r["response"]) for r in read_jsonl(tmp_path / "o.jsonl")] == [
        ("s1", "Hi?", "Hello!")
    ]

    msgs = [{"messages": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}]}]
    pq.write_table(pa.Table.from_pylist(msgs), tmp_path / "m.parquet")
    seed_pairs(tmp_path / "m.parquet", tmp_path / "o.jsonl")
    assert [(r["instruction"], r["response"]) for r in read_jsonl(tmp_path / "o.jsonl")] == [("Q1", "A1")]

    (tmp_path / "p.csv").write_text("question,answer\nWhy?,Because.\n")
    with pytest.raises(RecordError, match="no seed pair passed"):
        seed_pairs(tmp_path / "p.csv", tmp_path / "o.jsonl")
    seed_pairs(
        tmp_path / "p.csv",
        tmp_path / "o.jsonl",
        SeedConfig(instruction_field="question", response_field="answer"),
    )
    assert [(r["instruction"], r["response"]) for r in read_jsonl(tmp_path / "o.jsonl")] == [
        ("Why?", "Because.")
    ]


def test_seed_errors(tmp_path):
    with pytest.raises(RecordError, match="not found"):
        seed_pairs(tmp_path / "missing.jsonl", tmp_path / "o.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(RecordError, match="is empty"):
        seed_pairs(tmp_path / "empty.jsonl", tmp_path / "o.jsonl")


# ---------------------------------------------------------------- segment

PARA = (
    "Honeybees live in colonies with a single queen, thousands of female workers and a few hundred drones. "
    "Workers change jobs as they age, from cleaning cells to building comb and finally foraging for nectar. "
    "Foragers share the location of flowers with a waggle dance whose angle encodes the direction of food. "
    "The length of the waggle run tells the other bees how far away the flowers are from the hive entrance. "
)
PARA2 = (
    "Volcanoes erupt when magma rises through the crust and the gases dissolved in it come out of solution. "
    "Runny basaltic magma lets bubbles escape, so its eruptions are mostly gentle rivers of glowing lava. "
    "Sticky magma rich in silica traps the gas until the pressure becomes enormous and shatters the rock. "
    "The resulting explosive eruptions throw columns of ash and pumice far up into the stratosphere. "
)
PARA3 = (
    "A strong colony can hold sixty thousand bees at the height of summer and far fewer in winter. "
    "In autumn the workers push the drones out, so that they do not eat the stores needed until spring. "
)
PAGE = f"""<html><body><nav><ul><li><a href="/">Home</a></li><li><a href="/x">Topics</a></li></ul></nav>
<h1>Bees</h1><h2>Colony life</h2><p>{PARA}</p><p>{PARA3}</p>
<h2>Advertisement</h2><p>{PARA2} Buy now.</p>
<h2>SHARE THIS</h2><p>{PARA2} Share it.</p>
<p>Copyright 2024 Example Media</p></body></html>"""


def test_html_sections_include_subheaders_and_skip_link_lists():
    html = """<html><head><title>Page</title></head><body><ul><li><a href="/">Quick Links</a></li></ul>
    <h1>Title</h1><p>Intro.</p><h2>Part A</h2><p>Alpha text.</p><h3>Detail</h3><p>Detail text.</p>
    <h2>Part B</h2><p>Beta text.</p><script>var x = 1;</script></body></html>"""
    title, blocks = page_blocks(html, "none")
    assert title == "Page"
    secs = {
        "/".join(path): "\n".join(paras) for path, paras, _ in html_sections(title, blocks, 1, 3000, False)
    }
    assert secs["Page/Title/Part A"] == "Alpha text.\nDetail\nDetail text."
    assert secs["Page/Title/Part A/Detail"] == "Detail text."
    assert secs["Page/Title/Part B"] == "Beta text."
    assert secs["Page/Title"].startswith("Intro.\nPart A\nAlpha text.") and "var x" not in secs["Page/Title"]
    assert (
        "Quick Links" not in "".join(secs.values()) and "Page" not in secs
    )  # no text before the first header
    # split: the same sections while they fit, and the whole page under its title (which is not the h1).
    split = {
        "/".join(path): "\n".join(paras) for path, paras, _ in html_sections(title, blocks, 1, 3000, True)
    }
    assert split.pop("Page") == "Title\n" + secs["Page/Title"] and split == secs


def test_deep_nesting_is_linear_and_stays_under_the_recursion_limit():
    html = "<html><body><h1>Deep</h1>" + "<div>" * 5000 + "<p>inside</p>" + "</div>" * 5000 + "</body></html>"
    _, blocks = page_blocks(html, "none")
    assert blocks == [(1, "Deep"), (0, "inside")]


def test_filters():
    lines = [
        "Real text.",
        "Copyright 2024 Example Media",
        "Share on Facebook. Share on X.",
        "We use cookies to improve it.",
    ]
    assert [boilerplate_line(line) for line in lines] == [False, True, True, True]
    assert repetitive("Buy now. Buy now today. Buy now. Buy now today. Buy now. Something else here.")
    assert not repetitive(PARA)


def _funnel(tmp_path, corpus, **kw):
    return segment(corpus, tmp_path / "seg.jsonl", SegmentConfig(**kw), log=lambda s: None)


def test_demo_funnel_and_sampling(tmp_path):
    # The paper's literal reading: every header section of the whole page, nested ones overlapping.
    literal = _funnel(tmp_path, "demo", extractor="none", long_sections="drop")["funnel"]
    assert literal["documents"] == 30 and literal["kept"] > 50
    assert literal["dropped_navigation_header"] > 0 and literal["dropped_uppercase_header"] > 0
    assert literal["dropped_empty_header"] > 0
    # The default: the article only (menus, share boxes, comments and newsletter boxes are not main
    # content): each article under its title, and its two sections.
    stats = _funnel(tmp_path, "demo")
    f = stats["funnel"]
    assert f["documents"] == 30 and f["kept"] == stats["rows"] == 90 and stats["extractor"] == "trafilatura"
    rows = list(read_jsonl(tmp_path / "seg.jsonl"))
    assert all(600 <= len(r["text"]) <= 3000 for r in rows) and len({r["id"] for r in rows}) == len(rows)
    assert not any(r["header_path"][-1] in ("Advertisement", "Comments") for r in rows)
    assert not any(
        word in r["text"] for r in rows for word in ("Newsletter", "Share on Facebook", "Great article")
    )
    sampled = segment(
        "demo", tmp_path / "s10.jsonl", SegmentConfig(max_segments=10), seed=3, log=lambda s: None
    )
    assert sampled["rows"] == 10 and sampled["funnel"]["dropped_sampling"] == stats["rows"] - 10
    ids = {r["id"] for r in rows}
    assert {r["id"] for r in read_jsonl(tmp_path / "s10.jsonl")} <= ids


def test_html_page_exact_drops(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "page.html").write_text(PAGE)
    stats = _funnel(
        tmp_path, tmp_path / "c", min_chars=300, max_chars=1000, extractor="none", long_sections="drop"
    )
    rows = list(read_jsonl(tmp_path / "seg.jsonl"))
    assert [r["header_path"] for r in rows] == [["Bees", "Colony life"]]
    assert rows[0]["text"] == (PARA.strip() + "\n" + PARA3.strip())
    f = stats["funnel"]
    assert (
        f["dropped_navigation_header"] == 1
        and f["dropped_uppercase_header"] == 1
        and f["dropped_too_long"] == 1
    )
    assert stats["extractor"] == "none" and stats["extractor_version"].startswith("beautifulsoup4 ")


def _jsonl(path, docs, opener=open):
    with opener(path, "wb") as f:
        for d in docs:
            f.write((json.dumps(d) + "\n").encode())


def test_jsonl_forms_dedup_and_language(tmp_path):
    import zstandard

    near = PARA.replace("hive entrance", "hive door")  # one word changed: a near-duplicate
    docs = [
        {"id": "a", "text": PARA + "\n\n" + PARA2},
        {"id": "b", "text": PARA + "\n\n" + PARA2},
        {"id": "c", "text": near + "\n\n" + PARA2},
        {
            "id": "d",
            "text": (
                "Las abejas viven en colonias con una sola reina y miles de obreras. "
                "Las obreras cambian de tarea a medida que envejecen dentro de la colmena. "
                "Las pecoreadoras comunican la posición de las flores con una danza. "
                "El ángulo de la danza indica la dirección respecto al sol. "
                "La duración del recorrido indica la distancia hasta el alimento. "
            ),
        },
    ]
    (tmp_path / "c").mkdir()
    _jsonl(tmp_path / "c" / "1.jsonl.gz", docs[:2], gzip.open)
    with (
        open(tmp_path / "c" / "2.jsonl.zst", "wb") as raw,
        zstandard.ZstdCompressor().stream_writer(raw) as f,
    ):
        f.write("".join(json.dumps(d) + "\n" for d in docs[2:]).encode())
    stats = _funnel(tmp_path, tmp_path / "c", min_chars=300, max_chars=900)
    f = stats["funnel"]
    assert f["documents"] == 4 and stats["rows"] == 1
    assert f["dropped_duplicate"] == 1 and f["dropped_near_duplicate"] == 1 and f["dropped_language"] == 1
    assert [r["meta"]["doc_id"] for r in read_jsonl(tmp_path / "seg.jsonl")] == ["a"]
    assert windows(text_paragraphs("a\n\nb\n\n c "), 1, 3) == [
        ("a\nb", 0, 4),
        ("c", 7, 8),
    ]  # whole paragraphs
    doc = PARA + "\n\n" + PARA2
    ((text, start, end),) = windows(text_paragraphs(doc), 600, 3000)
    assert (start, end) == (0, len(doc.rstrip())) and text == PARA.strip() + "\n" + PARA2.strip()
    rows = list(read_jsonl(tmp_path / "seg.jsonl"))
    assert rows[0]["meta"]["offsets"] == [0, len(doc.rstrip())]  # doc "a" is this same text


def test_warc_html_and_wet_records(tmp_path):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    path = tmp_path / "crawl.warc.gz"
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        w.write_record(
            w.create_warc_record(
                "https://bees.example/", "response", payload=io.BytesIO(PAGE.encode()), http_headers=http
            )
        )
        w.write_record(
            w.create_warc_record(
                "https://volcano.example/",
                "conversion",
                payload=io.BytesIO(PARA2.encode()),
                warc_content_type="text/plain",
            )
        )
    stats = _funnel(tmp_path, path, min_chars=300, max_chars=1000)
    rows = list(read_jsonl(tmp_path / "seg.jsonl"))
    assert [(r["url"], r["header_path"]) for r in rows] == [
        ("https://bees.example/", ["Bees", "Colony life"]),
        ("https://volcano.example/", []),
    ]
    assert stats["funnel"]["documents"] == 2
    # A truncated WARC: the records before the cut are read, the damage is counted with its offset.
    data = path.read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "cut.warc.gz").write_bytes(data[: len(data) - 40])
    stats = _funnel(tmp_path, tmp_path / "cut", min_chars=300, max_chars=1000)
    assert stats["bad_input"] == {"truncated_file": 1} and stats["rows"] >= 1


def test_bad_input_counted_skipped_or_strict(tmp_path):
    good = {"id": "ok", "text": PARA}
    c = tmp_path / "c"
    c.mkdir()
    (c / "a.jsonl").write_bytes(
        b'{"id": "x", "text": "unterminated\n'
        + b'{"id": "u", "text": "caf\xe9"}\n'
        + (json.dumps(good) + "\n").encode()
        + b'{"id": "e", "text": ""}\n'
        + (json.dumps({"id": "big", "text": "word " * 2_100_000}) + "\n").encode()
    )
    gz = gzip.compress((json.dumps(good | {"id": "g"}) + "\n").encode() * 50)
    (c / "b.jsonl.gz").write_bytes(gz[: len(gz) // 2])
    (c / "p.html").write_text("<html><body><p>No headers at all here.</p></body></html>")
    (c / "huge.html").write_text(
        "<html><body><h1>Big</h1><script>" + "x" * 6_000_000 + "</script></body></html>"
    )
    logs = []
    stats = segment(c, tmp_path / "s.jsonl", SegmentConfig(min_chars=300), log=logs.append)
    assert stats["bad_input"] == {
        "malformed_json": 1,
        "invalid_utf8": 1,
        "document_too_large": 2,
        "truncated_file": 1,
    }
    assert any("huge.html" in line and "segment.max_html_chars" in line for line in logs)
    assert stats["funnel"]["empty_documents"] == 1 and stats["rows"] == 1
    assert any("a.jsonl:1" in line for line in logs) and any(
        "a.jsonl:2" in line and "UTF-8" in line for line in logs
    )
    with pytest.raises(RecordError, match=r"a.jsonl:1: not valid JSON"):
        segment(c, tmp_path / "s2.jsonl", SegmentConfig(min_chars=300, strict=True), log=logs.append)
    assert not (tmp_path / "s2.jsonl").exists() and not (tmp_path / "s2.jsonl.tmp").exists()


def test_rerun_is_byte_identical_and_self_concatenation_keeps_the_same(tmp_path):
    seg1 = segment("demo", tmp_path / "a.jsonl", SegmentConfig(max_segments=20), log=lambda s: None)
    segment("demo", tmp_path / "b.jsonl", SegmentConfig(max_segments=20), log=lambda s: None)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes() and seg1["rows"] == 20
    docs = [
        {"id": f"d{i}", "text": (PARA if i % 2 else PARA2) + f" Document {i} ends with its own number {i}."}
        for i in range(10)
    ]
    _jsonl(tmp_path / "one.jsonl", docs)
    _jsonl(tmp_path / "twice.jsonl", docs + docs)
    one = segment(
        tmp_path / "one.jsonl",
        tmp_path / "o.jsonl",
        SegmentConfig(min_chars=300, near_duplicate_threshold=None),
        log=lambda s: None,
    )
    two = segment(
        tmp_path / "twice.jsonl",
        tmp_path / "t.jsonl",
        SegmentConfig(min_chars=300, near_duplicate_threshold=None),
        log=lambda s: None,
    )
    assert [r["id"] for r in read_jsonl(tmp_path / "o.jsonl")] == [
        r["id"] for r in read_jsonl(tmp_path / "t.jsonl")
    ]
    assert two["funnel"]["dropped_duplicate"] == 10 + one["funnel"].get("dropped_duplicate", 0)


def test_sharded_output_folder(tmp_path):
    stats = segment("demo", tmp_path / "shards", SegmentConfig(shard_size=20), log=lambda s: None)
    shards = sorted(p.name for p in (tmp_path / "shards").glob("*.jsonl"))
    assert shards[0] == "00000.jsonl" and len(shards) == -(-stats["rows"] // 20)
    assert len(list(read_jsonl(tmp_path / "shards"))) == stats["rows"]


def test_empty_corpus_is_a_clear_error(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "too short"}\n')
    with pytest.raises(RecordError, match="no segment .* passed the filters"):
        segment(corpus, tmp_path / "s.jsonl", log=lambda s: None)
    assert not (tmp_path / "s.jsonl").exists()


def test_hub_sources_go_through_datasets(tmp_path, monkeypatch):
    """The hub code path, fed by local files: `datasets.load_dataset` is called with the hub id and the
    rows it returns are used as they would be from the hub (oasst message table; streamed web text)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from humback.data.seed import demo_seed_path

    trees = [json.loads(line) for line in demo_seed_path().read_text().splitlines()]
    flat = [
        {k: v for k, v in row.items() if k not in ("labels", "emojis")} for t in trees for row in _flatten(t)
    ]
    pq.write_table(pa.Table.from_pylist(flat), tmp_path / "oasst.parquet")
    _jsonl(tmp_path / "web.jsonl", [{"id": "w1", "text": PARA + "\n\n" + PARA2}])
    real_load, calls = datasets.load_dataset, []

    def fake_load(name, split=None, streaming=False, **kw):
        calls.append((name, split, streaming))
        local = {
            "OpenAssistant/oasst1": ("parquet", tmp_path / "oasst.parquet"),
            "HuggingFaceFW/fineweb": ("json", tmp_path / "web.jsonl"),
        }[name]
        return real_load(local[0], data_files=str(local[1]), split=split, streaming=streaming)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    stats = seed_pairs("OpenAssistant/oasst1", tmp_path / "s.jsonl")
    assert stats["rows"] == 46 and stats["format"] == "oasst-messages"
    stats = segment(
        "HuggingFaceFW/fineweb", tmp_path / "g.jsonl", SegmentConfig(min_chars=300), log=lambda s: None
    )
    assert stats["rows"] == 1
    assert calls == [("OpenAssistant/oasst1", "train", False), ("HuggingFaceFW/fineweb", "train", True)]


def test_careless_output_paths_delete_nothing(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(RecordError, match="holds other files .*thesis.tex"):
        segment("demo", home, log=lambda s: None)
    assert (home / "thesis.tex").read_text() == "years of work" and not (tmp_path / "home.tmp").exists()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "00000.jsonl").write_text(json.dumps({"id": "a", "text": PARA + "\n" + PARA2}) + "\n")
    for out in (corpus, corpus / "segments.jsonl", tmp_path):
        with pytest.raises(RecordError, match="overlaps the corpus"):
            segment(corpus, out, SegmentConfig(min_chars=300), log=lambda s: None)
    assert (corpus / "00000.jsonl").exists() and len(list(corpus.iterdir())) == 1
    # A folder of earlier shards is replaced as before.
    stats = segment("demo", tmp_path / "shards", SegmentConfig(shard_size=10), log=lambda s: None)
    again = segment("demo", tmp_path / "shards", SegmentConfig(shard_size=10), log=lambda s: None)
    assert again["rows"] == stats["rows"] == len(list(read_jsonl(tmp_path / "shards")))

"""Real web text in, clean segments out: paragraph windows for plain-text corpora, main-content extraction
and long sections for HTML, optional quality filters. Fixtures are written here for the project."""

import json
import random

import pytest

from humback.config import ConfigError, RunConfig, SegmentConfig
from humback.data.extract import page_blocks
from humback.data.sections import text_paragraphs, windows
from humback.data.segment import segment
from humback.records import read_jsonl

NOUNS = [
    "harbour",
    "mill",
    "bridge",
    "orchard",
    "library",
    "railway",
    "market",
    "canal",
    "school",
    "chapel",
    "factory",
    "garden",
    "quarry",
    "theatre",
    "hospital",
    "lighthouse",
    "brewery",
    "museum",
    "farm",
    "forge",
]
PLACES = [
    "Lisbon",
    "Bergen",
    "Lyon",
    "Krakow",
    "Porto",
    "Ghent",
    "Turin",
    "Leeds",
    "Cork",
    "Basel",
    "Riga",
    "Delft",
    "Bruges",
    "Seville",
    "Tallinn",
    "Graz",
]
VERBS = [
    "rebuilt",
    "expanded",
    "sold",
    "flooded",
    "restored",
    "closed",
    "painted",
    "surveyed",
    "moved",
    "opened",
]
PEOPLE = [
    "the mayor",
    "a local teacher",
    "two brothers",
    "the guild",
    "an engineer",
    "the council",
    "a merchant",
    "the bishop",
    "a young architect",
    "the railway company",
]


def sentence(rng: random.Random) -> str:
    return (
        f"In {rng.randint(1700, 1999)} {rng.choice(PEOPLE)} {rng.choice(VERBS)} the {rng.choice(NOUNS)} "
        f"near {rng.choice(PLACES)}, and {rng.choice(PEOPLE)} kept"
        f" {rng.choice(['a diary', 'the accounts', 'careful notes', 'every letter'])} "
        f"about the {rng.choice(NOUNS)} for {rng.randint(2, 40)} years."
    )


def paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence(rng) for _ in range(sentences))


def test_single_newline_paragraphs_are_covered_by_windows():
    """FineWeb/C4-style documents: one line per paragraph, some paragraphs longer than a window."""
    rng = random.Random(0)
    total = covered = 0
    for _ in range(40):
        doc = "\n".join(paragraph(rng, rng.choice([1, 2, 3, 5, 8, 30])) for _ in range(rng.randint(1, 12)))
        if len(doc) < 600:
            continue
        found = windows(text_paragraphs(doc), 600, 3000)
        assert all(len(text) <= 3000 for text, _, _ in found)
        assert all(len(text) >= 600 for text, _, _ in found)  # a short tail is evened out with its neighbour
        for text, start, end in found:
            assert doc[start:end].startswith(text[:50]) and doc[start:end].endswith(text[-50:])
        total += len(doc)
        covered += sum(len(text) for text, _, _ in found)
    assert covered / total >= 0.97


def test_long_paragraph_is_cut_at_sentence_ends():
    rng = random.Random(1)
    para = paragraph(rng, 45)  # ~5,000 characters, one line
    found = windows(text_paragraphs(para), 600, 3000)
    assert len(found) == 2 and all(600 <= len(t) <= 3000 and t.endswith(".") for t, _, _ in found)
    assert " ".join(t for t, _, _ in found) == para
    # A "sentence" longer than a window (no full stop) is cut at spaces.
    words = " ".join(["lorem"] * 1500)
    assert all(
        len(t) <= 3000 and not t.startswith(" ") for t, _, _ in windows(text_paragraphs(words), 600, 3000)
    )


def test_plain_text_corpus_segments_keep_their_spans(tmp_path):
    rng = random.Random(2)
    doc = "\n".join(paragraph(rng, 4) for _ in range(20))  # ~9,000 characters: one window before
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "d1", "text": doc}) + "\n")
    stats = segment(
        tmp_path / "c.jsonl",
        tmp_path / "s.jsonl",
        SegmentConfig(near_duplicate_threshold=None),
        log=lambda s: None,
    )
    rows = list(read_jsonl(tmp_path / "s.jsonl"))
    assert stats["funnel"]["segments"] == len(rows) >= 3
    assert sum(len(r["text"]) for r in rows) >= 0.95 * len(doc)
    for r in rows:
        start, end = r["meta"]["offsets"]
        assert doc[start:end] == r["text"]


def _article(rng: random.Random, history_paragraphs: int) -> str:
    history = "".join(f"<p>{paragraph(rng, 6)}</p>" for _ in range(history_paragraphs))
    return f"""<html><head><title>Old Town Guide</title></head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/towns">Towns</a></li></ul></nav>
<article><h1>Old Town Guide</h1><p>{paragraph(rng, 7)}</p>
<h2>History</h2>{history}
<h2>Getting there</h2><p>{paragraph(rng, 7)}</p></article>
<footer><h2>Contact us</h2><p>{FOOTER}</p><h2>Connect with us</h2>
<ul><li><a href="https://x.example/us">Follow us on X</a></li><li><a href="https://fb.example/us">Facebook</a></li></ul>
</footer></body></html>"""


FOOTER = (
    "Old Town Guide Ltd, 14 Harbour Street, Bergen 5003, Norway. Registered office and editorial desk open "
    "Monday to Friday from nine in the morning to five in the afternoon, closed on public holidays. "
    "Telephone our switchboard on +47 55 00 00 00 or write to the editors at the address above; we answer "
    "letters about corrections within ten working days and publish every correction on our corrections page. "
    "Advertising enquiries go to our commercial team at the same address. Press enquiries are handled by the "
    "communications office, which also keeps the archive of past editions and the photo library for "
    "licensing. "
    "Company number 9876543, VAT number NO 987 654 321 MVA, member of the regional publishers association."
)


def test_long_section_split_under_its_header_path_and_footer_left_out(tmp_path):
    rng = random.Random(3)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "page.html").write_text(_article(rng, 8))  # History: ~5,800 characters
    cfg = {"near_duplicate_threshold": None}
    stats = segment(tmp_path / "c", tmp_path / "s.jsonl", SegmentConfig(**cfg), log=lambda s: None)
    rows = list(read_jsonl(tmp_path / "s.jsonl"))
    paths = [r["header_path"] for r in rows]
    assert paths.count(["Old Town Guide", "History"]) == 2  # ~5,800 characters in two windows
    assert ["Old Town Guide", "Getting there"] in paths and stats["funnel"]["long_sections_split"] >= 1
    assert all(len(r["text"]) <= 3000 for r in rows)
    text = "\n".join(r["text"] for r in rows)
    assert "Harbour Street" not in text and "Follow us" not in text  # the footer is not main content
    # The paper's literal rule drops the long section whole; the whole page keeps the footer's section.
    segment(
        tmp_path / "c", tmp_path / "d.jsonl", SegmentConfig(long_sections="drop", **cfg), log=lambda s: None
    )
    assert ["Old Town Guide", "History"] not in [r["header_path"] for r in read_jsonl(tmp_path / "d.jsonl")]
    segment(tmp_path / "c", tmp_path / "n.jsonl", SegmentConfig(extractor="none", **cfg), log=lambda s: None)
    assert any("Harbour Street" in r["text"] for r in read_jsonl(tmp_path / "n.jsonl"))


@pytest.mark.parametrize("extractor", ["trafilatura", "resiliparse"])
def test_extractors_keep_the_page_headers(extractor):
    title, blocks = page_blocks(_article(random.Random(4), 2), extractor)
    headers = [text for level, text in blocks if level]
    assert title == "Old Town Guide" and headers[:3] == ["Old Town Guide", "History", "Getting there"]
    if extractor == "trafilatura":  # a header whose whole section was boilerplate goes with it
        assert "Contact us" not in headers and "Connect with us" not in headers


def test_extractor_in_stats_and_stage_fingerprint(tmp_path):
    from humback.pipeline import build_stages

    def fp(**segment):
        cfg = RunConfig.model_validate({"segment": segment})
        return {s.key: s.fp for s in build_stages(cfg, tmp_path, log=lambda s: None)}

    default, other, drop = fp(), fp(extractor="resiliparse"), fp(long_sections="drop")
    assert default["segment"] != other["segment"] != drop["segment"] != default["segment"]
    assert default["augment"] != other["augment"]  # what depends on the segments follows
    assert default["seed"] == other["seed"]
    stats = segment(
        "demo",
        tmp_path / "s.jsonl",
        SegmentConfig(extractor="resiliparse", max_segments=3),
        log=lambda s: None,
    )
    assert stats["extractor"] == "resiliparse" and stats["extractor_version"].startswith("resiliparse ")


def test_quality_filters_counted_and_switchable(tmp_path):
    rng = random.Random(5)
    good = "\n".join(paragraph(rng, 3) for _ in range(5))
    numbers = "\n".join(
        " ".join(str(rng.randint(10, 99999)) for _ in range(12)) + " item." for _ in range(20)
    )
    no_stops = "\n".join(paragraph(rng, 1).rstrip(".") for _ in range(4)) + "\n" + paragraph(rng, 8)
    docs = [
        {"id": "good", "text": good},
        {"id": "numbers", "text": numbers},
        {"id": "lines", "text": no_stops},
    ]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    cfg = {"lang": None, "near_duplicate_threshold": None}
    plain = segment(tmp_path / "c.jsonl", tmp_path / "a.jsonl", SegmentConfig(**cfg), log=lambda s: None)
    assert plain["rows"] == 3 and plain["quality_filters"] == []
    stats = segment(
        tmp_path / "c.jsonl",
        tmp_path / "b.jsonl",
        SegmentConfig(quality_filters=["gopher_quality", "c4"], **cfg),
        log=lambda s: None,
    )
    assert stats["funnel"]["dropped_gopher_quality"] == 1 and stats["rows"] == 2
    rows = {r["meta"]["doc_id"]: r["text"] for r in read_jsonl(tmp_path / "b.jsonl")}
    # C4's line filter removed the four lines without a full stop; the rest is still long enough.
    assert rows["lines"] == no_stops.split("\n")[-1] and rows["good"] == good


def test_quality_filters_without_the_extra_say_how_to_install(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_datatrove(name, *args, **kw):
        if name.startswith("datatrove"):
            raise ImportError("No module named 'datatrove'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_datatrove)
    with pytest.raises(ConfigError, match=r"humback\[quality\]"):
        segment("demo", tmp_path / "s.jsonl", SegmentConfig(quality_filters=["c4"]), log=lambda s: None)

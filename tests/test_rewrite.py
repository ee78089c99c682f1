"""The rewrite stage (Back-and-Forth Translation): the reply read between its markers, the faithfulness
checks, both texts kept, resume and the response cache, and a loop without it unchanged."""

import json

import pytest

from humback.config import ConfigError, EngineConfig, RewriteConfig, load_config
from humback.prompts import REWRITE_END, REWRITE_START
from humback.rewrite import check_rewriter, judge_rewrite, novel, parse_rewrite, rewrite
from humback.rowloop import LocalRunner

ORIGINAL = (
    "Sourdough needs a lively starter. Feed it twice a day with equal weights of flour and water, keep it "
    "near"
    " 24 degrees, and bake when it doubles within 6 hours. Subscribe to our newsletter for more recipes!"
)
FAITHFUL = (
    "To bake sourdough you need a lively starter. Feed it twice a day with equal weights of flour and water,"
    " keep it near 24 degrees, and bake when it doubles within 6 hours."
)


def wrap(text: str) -> str:
    return f"Sure! {REWRITE_START}\n{text}\n{REWRITE_END}"


class FakeRewriter:
    """Replies chosen per instruction (the text after 'Instruction:' in the prompt); counts its calls."""

    model, fingerprint, chunk_size, backend = "fake-rewriter", "fake-rewriter:0", 2, "fake"

    def __init__(self, replies: dict[str, str]):
        self.replies, self.calls = replies, 0

    def generate(self, prompts, params, seeds=None):
        self.calls += len(prompts)
        out = []
        for p in prompts:
            # The reply is begun with the start marker by default (rewrite.begin_reply): the user's turn
            # holds the ask, and a reply continues what was begun.
            text = next(m["content"] for m in p if m["role"] == "user")
            instruction = text.split("<instruction>\n", 1)[1].split("\n</instruction>", 1)[0]
            out.append(self.replies[instruction])
        return out


def selected(tmp_path, instructions: list[str]):
    path = tmp_path / "selected.jsonl"
    rows = [
        {"id": f"r{i}", "instruction": ins, "response": ORIGINAL, "score": 4.0, "tag": "augmented"}
        for i, ins in enumerate(instructions)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_reply_counts_only_between_its_markers():
    assert parse_rewrite(wrap("the text")) == "the text"
    assert parse_rewrite(f"{REWRITE_START} a {REWRITE_END} then {REWRITE_START} b {REWRITE_END}") == "b"
    assert parse_rewrite(f"{REWRITE_START} cut off by the token limit") is None
    assert parse_rewrite("no markers at all") is None and parse_rewrite(wrap("  ")) is None


def test_a_begun_reply_is_read_from_its_start_to_the_end_marker():
    assert parse_rewrite("the text\n" + REWRITE_END, begun=True) == "the text"
    assert parse_rewrite("the text, never closed", begun=True) is None  # cut off, or ended without it
    assert parse_rewrite(wrap("again"), begun=True) == "again"  # a model that wrote the markers itself


def test_a_rewrite_that_copies_the_original_is_counted_apart():
    row = {"instruction": "How do I keep a sourdough starter alive?", "response": ORIGINAL}
    status, measures = judge_rewrite("  " + ORIGINAL.replace(". ", ".\n"), row, RewriteConfig())
    assert status == "unchanged" and measures["overlap"] == 1.0


def test_the_reply_is_begun_with_the_start_marker_unless_switched_off(tmp_path):
    seen = []

    class Recording(FakeRewriter):
        def generate(self, prompts, params, seeds=None):
            seen.extend(prompts)
            return super().generate(prompts, params, seeds)

    src = selected(tmp_path, ["keep me"])
    gen = Recording({"keep me": FAITHFUL + "\n" + REWRITE_END})
    assert rewrite(src, LocalRunner(gen), tmp_path / "a", RewriteConfig(enabled=True))["rewritten"] == 1
    assert seen[-1][-1] == {"role": "assistant", "content": REWRITE_START}
    off = RewriteConfig(enabled=True, begin_reply=False)
    assert rewrite(src, LocalRunner(gen), tmp_path / "b", off)["outcome"] == {"unparsed": 1}
    assert [m["role"] for m in seen[-1]] == ["user"]


def test_each_faithfulness_check_and_its_switch():
    row = {"instruction": "How do I keep a sourdough starter alive?", "response": ORIGINAL}
    cfg = RewriteConfig()
    status, measures = judge_rewrite(FAITHFUL, row, cfg)
    assert status == "rewritten" and measures["overlap"] >= 0.7 and measures["novel"] == []
    assert judge_rewrite("Use yeast.", row, cfg)[0] == "failed_overlap"
    assert judge_rewrite(FAITHFUL + " " + FAITHFUL, row, cfg)[0] == "failed_length"
    assert judge_rewrite(FAITHFUL.replace("6 hours", "9 hours"), row, cfg)[0] == "failed_novel"
    assert novel("Ask your baker, Marguerite, at 7 or 24.", ORIGINAL) == ["7", "Marguerite"]
    assert novel("Keep it warm. Sourdough likes 24 degrees.", ORIGINAL) == []  # sentence starts are not names
    # A check switched off no longer decides.
    assert judge_rewrite(FAITHFUL.replace("6 hours", "9 hours"), row, cfg.model_copy(update={"checks": []}))[
        0
    ] == ("rewritten")
    assert judge_rewrite(None, row, cfg) == ("unparsed", {})


def test_the_stage_keeps_both_texts_and_the_original_where_a_rewrite_does_not_hold(tmp_path):
    src = selected(tmp_path, ["keep me", "unparsed", "invented"])
    gen = FakeRewriter(
        {
            "keep me": wrap(FAITHFUL),
            "unparsed": "I cannot do that.",
            "invented": wrap(FAITHFUL.replace("6 hours", "11 hours")),
        }
    )
    stats = rewrite(src, LocalRunner(gen), tmp_path / "iter1", RewriteConfig(enabled=True))
    rows = {
        r["id"]: r for r in map(json.loads, (tmp_path / "iter1" / "rewritten.jsonl").read_text().splitlines())
    }
    assert rows["r0"]["response"] == FAITHFUL and rows["r0"]["original_response"] == ORIGINAL
    assert rows["r1"]["response"] == ORIGINAL and rows["r1"]["rewrite"]["status"] == "unparsed"
    assert rows["r1"]["rewrite"]["reply"] == "I cannot do that."
    assert rows["r2"]["response"] == ORIGINAL and rows["r2"]["rewrite"]["status"] == "failed_novel"
    assert "11 hours" in rows["r2"]["rewrite"]["text"]
    assert stats["outcome"] == {"failed_novel": 1, "rewritten": 1, "unparsed": 1} and stats["rewritten"] == 1
    assert stats["parse_rate"] == pytest.approx(2 / 3, abs=1e-4) and stats["pass_rate"] == 0.5
    assert stats["model"] == "fake-rewriter" and stats["kept_original"] == 2
    # 'drop' leaves a row that did not parse out of what training reads (the attempt stays in rewrites.jsonl).
    gen.calls = 0
    dropped = rewrite(
        src, LocalRunner(gen), tmp_path / "iter2", RewriteConfig(enabled=True, on_parse_failure="drop")
    )
    assert dropped["rows"] == 2 and dropped["dropped"] == 1
    assert len((tmp_path / "iter2" / "rewrites.jsonl").read_text().splitlines()) == 3


def test_a_killed_rewrite_resumes_and_a_rerun_asks_the_cache(tmp_path):
    from humback.generation.cache import CachedGenerator, ResponseCache

    src = selected(tmp_path, ["a", "b", "c", "d"])
    gen = FakeRewriter({k: wrap(FAITHFUL) for k in "abcd"})
    cached = CachedGenerator(gen, ResponseCache(tmp_path / "cache.sqlite"))
    out = tmp_path / "iter1"
    rewrite(src, LocalRunner(cached), out, RewriteConfig(enabled=True))
    assert gen.calls == 4
    # A kill after two rows: the partial file holds them; the rerun makes only the other two.
    rows = (out / "rewrites.jsonl").read_text().splitlines()
    (out / "rewrites.jsonl").unlink()
    (out / "rewrites.jsonl.partial").write_text("\n".join(rows[:2]) + "\n")
    settings_of = out / "rewrites.jsonl.partial.settings.json"
    assert not settings_of.exists()  # the finished stage removed it; a kill leaves it (or none, as here)
    again = rewrite(src, LocalRunner(cached), out, RewriteConfig(enabled=True))
    assert again["resumed_rows"] == 2 and (out / "rewrites.jsonl").read_text().splitlines() == rows
    assert gen.calls == 4  # the two missing rows came from the response cache


def test_a_rewriter_without_a_chat_template_is_a_config_error(tmp_path, tiny_model):
    from conftest import build_tiny_model

    plain = build_tiny_model(tmp_path / "plain", chat_template=None)
    with pytest.raises(ConfigError, match="no chat template"):
        check_rewriter(EngineConfig(backend="transformers"), str(plain))
    check_rewriter(EngineConfig(backend="transformers"), tiny_model)  # the tiny model has one
    check_rewriter(
        EngineConfig(backend="openai", model="served", base_url="http://127.0.0.1:9/v1"), str(plain)
    )


def test_the_stage_on_the_tiny_model_keeps_every_row(tmp_path, tiny_model):
    from humback.generation import load_generator

    src = selected(tmp_path, ["How do I keep a starter alive?", "What flour is best?"])
    gen = load_generator(EngineConfig(backend="transformers", device="cpu"), tiny_model)
    stats = rewrite(src, LocalRunner(gen), tmp_path / "iter1", RewriteConfig(enabled=True, max_new_tokens=12))
    rows = [json.loads(line) for line in (tmp_path / "iter1" / "rewritten.jsonl").read_text().splitlines()]
    assert stats["selected"] == 2 and [r["id"] for r in rows] == ["r0", "r1"]
    assert all(r["original_response"] == ORIGINAL for r in rows)  # a random model's reply does not parse
    assert stats["outcome"].get("unparsed") == 2 and all(r["response"] == ORIGINAL for r in rows)


def test_rewrite_off_is_the_loop_as_before_and_on_puts_it_between_curate_and_train(tmp_path):
    from humback.pipeline import build_stages

    def stages(*sets):
        return {s.key: s for s in build_stages(load_config("configs/demo.yaml", list(sets)), tmp_path, print)}

    off, on = stages("rewrite.enabled=false"), stages("rewrite.enabled=true")
    assert not any(k.startswith("rewrite") for k in off) and off["train:m1"].deps == ("seed", "curate:1")
    # Every rewrite setting is outside the fingerprints while the stage is off.
    assert {k: s.fp for k, s in stages("rewrite.enabled=false", "rewrite.min_overlap=0.9").items()} == {
        k: s.fp for k, s in off.items()
    }
    assert on["rewrite:1"].deps == ("curate:1",) and on["train:m1"].deps == ("seed", "rewrite:1")
    assert "rewritten.jsonl" in on["train:m1"].inputs["data"]
    assert {k: on[k].fp for k in ("seed", "curate:1")} == {k: off[k].fp for k in ("seed", "curate:1")}
    assert on["train:m1"].fp != off["train:m1"].fp


def test_export_says_which_rows_were_rewritten_and_by_whom(tmp_path):
    from humback.export import curated_rows

    run = tmp_path / "run"
    (run / "iter1").mkdir(parents=True)
    rows = [
        {
            "id": "a",
            "instruction": "Q?",
            "response": FAITHFUL,
            "original_response": ORIGINAL,
            "rewrite": {"status": "rewritten", "model": "big-chat"},
        },
        {
            "id": "b",
            "instruction": "Q2?",
            "response": ORIGINAL,
            "original_response": ORIGINAL,
            "rewrite": {"status": "unparsed", "model": "big-chat"},
        },
    ]
    (run / "iter1" / "rewritten.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = curated_rows(run, 1)
    assert [(r["rewritten"], r["rewriter"]) for r in out] == [(True, "big-chat"), (False, "big-chat")]
    assert out[0]["messages"][1]["content"] == FAITHFUL and out[0]["original_response"] == ORIGINAL
    from humback.export import dataset_card

    manifest = {
        "config": {},
        "stages": {
            "rewrite:1": {"status": "done", "stats": {"model": "big-chat", "rewritten": 1, "selected": 2}}
        },
    }
    assert "by big-chat: 1 of 2 rows" in dataset_card(manifest, 1, 2, ["data/train.jsonl"], "other", None)

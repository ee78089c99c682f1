"""Budgets: a stage that would pass a limit stops at a row (local) or shard (Ray) boundary with its rows
kept and exit code 4; the same command with the limit raised resumes, every row computed once. Spending is
counted (meter, manifest), priced from the role's prices, and training stops at a checkpointed step."""

from __future__ import annotations

import json

import pytest

from humback.budget import Allowance, BudgetStop, TimeUp, api_cost
from humback.cli import main
from humback.config import ConfigError, EngineConfig, TrainConfig, load_config
from humback.generation.base import SamplingParams
from humback.generation.meter import MeteredGenerator, Usage, usage_of
from humback.pipeline import run_pipeline
from humback.records import read_jsonl
from humback.rowloop import LocalRunner
from humback.status import status_table
from humback.training.sft import train

ROWS = [{"id": f"r{i}", "text": f"row {i}"} for i in range(10)]


class Served:
    """A stand-in for an OpenAI-compatible server: 100 prompt and 10 generated tokens a request, counted
    the way the openai backend counts a server's `usage`."""

    backend, model, fingerprint, chunk_size = "openai", "served", "served", 3

    def __init__(self, report: bool = True):
        self.usage, self.report, self.asked = Usage(), report, []

    def generate(self, prompts, params, seeds=None):
        self.asked += [p[0]["content"] for p in prompts]
        for _ in prompts:
            self.usage += Usage(1, 100, 10) if self.report else Usage(1, estimated=1)
        return ["an answer" for _ in prompts]


def work(gen, chunk):
    replies = gen.generate([[{"role": "user", "content": r["text"]}] for r in chunk], SamplingParams())
    return [{"id": r["id"], "reply": t} for r, t in zip(chunk, replies)]


def priced(**limits) -> Allowance:
    return Allowance("augment", [("budget.stages.augment", limits, {})])


def test_api_cost_is_tokens_at_the_roles_prices():
    engine = EngineConfig(backend="openai", model="m", price_input=2.5, price_output=10.0)
    assert api_cost(1_000_000, 100_000, engine) == pytest.approx(2.5 + 1.0)
    assert api_cost(1_000_000, 100_000, EngineConfig()) == 0.0  # no prices: costs nothing


def test_a_priced_role_stops_at_the_row_its_budget_allows_and_resumes_exactly(tmp_path):
    """$ per row = (100 x $2 + 10 x $10) / 1e6 = $0.0003: a $0.002 budget buys 6 rows (one row runs first,
    unmeasured, then the chunks or parts of chunks that fit), the 7th would pass it."""
    engine = EngineConfig(backend="openai", model="m", price_input=2.0, price_output=10.0)
    inner, out = Served(), tmp_path / "out.jsonl"
    allowance = Allowance("augment", [("budget.stages.augment", {"max_api_cost": 0.002}, {})], prices=engine)
    with pytest.raises(BudgetStop) as stop:
        LocalRunner(MeteredGenerator(inner), allowance).map(ROWS, work, out, {})
    e = stop.value
    assert e.exit_code == 4 and (e.done, e.left) == (6, 4)
    assert "budget.stages.augment.max_api_cost" in str(e) and "6 of 10 rows" in str(e)
    assert allowance.spent()["api_cost"] == pytest.approx(0.0018)
    assert allowance.spent()["prompt_tokens"] == 600 and allowance.spent()["generated_tokens"] == 60
    assert not out.exists() and len(out.with_name("out.jsonl.partial").read_text().splitlines()) == 6
    # The same limit again: a row's cost is known from the first attempt, so it stops at once.
    same = Allowance("augment", allowance.scopes, allowance.spent(), engine)
    with pytest.raises(BudgetStop, match="after 6 of 10 rows"):
        LocalRunner(MeteredGenerator(inner), same).map(ROWS, work, out, {})
    assert len(inner.asked) == 6
    # Raised: the same rows, only the 4 left asked.
    again = Allowance(
        "augment", [("budget.stages.augment", {"max_api_cost": 1.0}, {})], allowance.spent(), engine
    )
    done = LocalRunner(MeteredGenerator(inner), again).map(ROWS, work, out, {})
    assert [r["id"] for r in done.rows] == [r["id"] for r in ROWS] and done.resumed == 6
    assert sorted(inner.asked) == sorted(r["text"] for r in ROWS)  # every row asked once
    assert again.spent()["api_cost"] == pytest.approx(0.003)  # both attempts counted


def test_a_server_without_usage_is_counted_from_characters_and_flagged():
    gen = MeteredGenerator(Served(report=False))
    gen.generate([[{"role": "user", "content": "x" * 400}]], SamplingParams())
    used = usage_of(gen)
    assert used.estimated == 1 and used.requests == 1 and used.prompt_tokens >= 100


def test_a_local_backend_is_counted_with_its_tokenizer(tiny_tokenizer):
    class Local:
        backend, model, fingerprint, chunk_size, tokenizer = "transformers", "tiny", "tiny", 4, tiny_tokenizer

        def generate(self, prompts, params, seeds=None):
            return ["one two three"] * len(prompts)

    gen = MeteredGenerator(Local())
    chat = [{"role": "user", "content": "hello there"}]
    gen.generate([chat, chat], SamplingParams())
    from humback.templates import render_prompt

    prompt = len(tiny_tokenizer(render_prompt(tiny_tokenizer, chat), add_special_tokens=False)["input_ids"])
    reply = len(tiny_tokenizer("one two three", add_special_tokens=False)["input_ids"]) + 1
    assert usage_of(gen) == Usage(2, 2 * prompt, 2 * reply)


def test_claims_follow_the_measured_cost_and_limits_of_every_scope():
    a = Allowance(
        "curate:1",
        [
            ("budget.stages.curate", {"max_prompt_tokens": 1000}, {}),
            ("budget", {"max_prompt_tokens": 700}, {"prompt_tokens": 300}),
        ],
    )
    assert a.claim(0, 16) == 2  # nothing known yet: an eighth of the chunk goes first
    a.settle(0, {"prompt_tokens": 100}, 1.0)  # 50 a row; the run has 300 + 100 of 700
    assert a.claim(1, 10) == 6  # 300 left / 50
    a.settle(1, {"prompt_tokens": 300}, 1.0)
    assert a.claim(2, 10) == 0 and a.refused[0] == "budget.max_prompt_tokens"


def test_shards_are_granted_whole_and_one_at_a_time_until_a_cost_is_known():
    a = priced(max_generated_tokens=100)
    assert a.claim(0, 3, whole=True) == 3
    assert a.claim(1, 3, whole=True) is None  # wait: shard 0 is out, a row's cost unknown
    assert a.claim(0, 3, whole=True) == 3  # shard 0 asked again (a retried Ray task): still granted
    a.settle(0, {"generated_tokens": 30}, 2.0)  # 10 a row, 70 left
    assert a.claim(1, 3, whole=True) == 3 and a.claim(2, 3, whole=True) == 3  # 30 + 30 pending
    assert a.claim(3, 3, whole=True) == 0  # 10 left: the shard does not fit whole


def test_an_exhausted_budget_stops_a_stage_before_it_starts():
    a = Allowance("train:m1", [("budget", {"max_hours": 1.0}, {"seconds": 3600.0})])
    with pytest.raises(
        BudgetStop, match=r"train:m1\] not started: 1 h spent of 1 h\. Raise budget.max_hours"
    ):
        a.check()
    assert a.seconds_left() <= 0


def test_unknown_stage_names_in_the_budget_are_refused():
    with pytest.raises(ConfigError, match="no such stage: augmnt"):
        load_config(None, ['budget.stages={"augmnt": {"max_hours": 1}}'])


def test_a_run_stops_at_its_budget_exits_4_and_the_raised_budget_finishes_it(tiny_model, tmp_path, capsys):
    from test_pipeline import tiny_overrides

    run_dir = tmp_path / "run"
    # OpenVINO hands over 4 rows a chunk at batch size 1; a row writes up to 8 tokens and its end: one row
    # goes first (unmeasured), the 40 tokens run out a few rows later.
    overrides = tiny_overrides(tiny_model, segments=12) + ["iterations=1", "generation.batch_size=1"]
    limit = ["budget.stages.augment.max_generated_tokens=40"]
    args = ["run", "--run-dir", str(run_dir)] + [x for o in overrides + limit for x in ("--set", o)]
    assert main(args) == 4
    err = capsys.readouterr().err
    assert "humback: [augment] stopped by its budget after" in err and "error" not in err
    assert "raise budget.stages.augment.max_generated_tokens" in err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    entry = manifest["stages"]["augment"]
    assert entry["status"] == "stopped" and entry["stopped"]["limit"].endswith("max_generated_tokens")
    done = entry["stopped"]["done"]
    assert 1 <= done < 12 and entry["spent"]["rows"] == done and entry["spent"]["generated_tokens"] > 0
    assert "train:m0" not in manifest["stages"]  # nothing after the stopped stage ran
    shown = status_table(run_dir)
    assert f"stopped by budget.stages.augment.max_generated_tokens: {done} rows done" in shown
    partial = run_dir / "candidates.jsonl.partial"
    assert len(partial.read_text().splitlines()) == done
    spent_before = entry["spent"]["generated_tokens"]
    assert main(args) == 4  # the same limit: stops where it stopped, nothing more generated
    assert f"{done} rows done" in status_table(run_dir)
    again = json.loads((run_dir / "manifest.json").read_text())["stages"]["augment"]
    assert again["stopped"]["done"] == done and again["spent"]["generated_tokens"] == spent_before
    assert len(partial.read_text().splitlines()) == done
    # The budget raised: the same run continues, the rows already written kept, each segment once.
    data = run_pipeline(load_config(None, overrides), run_dir, log=lambda s: None)
    entry = data["stages"]["augment"]
    assert entry["status"] == "done" and entry["stats"]["resumed_rows"] == done
    assert entry["spent"]["rows"] == 12 and entry["spent"]["generated_tokens"] > spent_before
    seg_ids = [r["id"] for r in read_jsonl(run_dir / "segments.jsonl")]
    assert [r["id"] for r in read_jsonl(run_dir / "candidates.jsonl")] == seg_ids
    assert all(st["status"] == "done" and "spent" in st for st in data["stages"].values())


def test_training_stops_at_a_checkpointed_step_and_resumes_there(tiny_model, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"instruction": f"Q{i}?", "response": "A. " * (i + 1)}) + "\n" for i in range(8))
    )
    cfg = TrainConfig(method="full", batch_size=2, micro_batch_size=2, max_steps=4, max_length=256)
    out = tmp_path / "model"
    import time

    with pytest.raises(TimeUp) as up:  # a deadline already past: stops after the first step
        train([data], tiny_model, out, cfg, direction="forward", deadline=time.time())
    assert (up.value.done, up.value.total) == (1, 4)
    assert not out.exists() and (tmp_path / "model.tmp" / "trainer" / "checkpoint-1").is_dir()
    stats = train([data], tiny_model, out, cfg, direction="forward", log=lambda s: None)
    assert "checkpoint-1" in stats["resumed_from"] and stats["steps"] == 4


def test_the_plan_says_where_a_budget_would_stop_the_run():
    from humback.budget import forecast
    from humback.config import BudgetConfig

    stages = {
        "augment": {
            "prompt_tokens": 1000,
            "generated_tokens": {"expected": 500},
            "seconds": {"measured": 10},
        },
        "curate:1": {"prompt_tokens": 5000, "generated_tokens": {"expected": 0}, "seconds": {"measured": 20}},
        "train:m1": {"train_tokens": 9000, "seconds": {"measured": 100}},
    }
    budget = BudgetConfig(
        max_prompt_tokens=4000, max_hours=0.01, stages={"augment": {"max_generated_tokens": 400}}
    )
    assert forecast(budget, stages) == [
        (
            "augment would stop at budget.stages.augment.max_generated_tokens: the plan expects 500 generated"
            " tokens of 400 generated tokens by its end"
        ),
        (
            "curate:1 would stop at budget.max_prompt_tokens: the plan expects 6,000 prompt tokens of 4,000"
            " prompt tokens by its end"
        ),
        "train:m1 would stop at budget.max_hours: the plan expects 130 s of 36 s by its end",
    ]
    assert forecast(BudgetConfig(max_generated_tokens=10_000), stages) == []
    assert forecast(BudgetConfig(max_hours=1), {"augment": {"prompt_tokens": 5}}) == [
        "augment: budget.max_hours cannot be checked: the plan has no time for it"
    ]

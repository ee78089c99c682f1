"""`humback plan`: what a recipe will cost before it runs (docs/plan.md).

A bounded sample of the seed source and of the corpus goes through the seed and segment stages' own
rules; the kept shares are scaled to the sources' sizes (counted, or read from metadata), and every later
stage's rows, prompt tokens, generated tokens (at most and expected), training tokens and disk follow from
the recipe, tokenised with the run's model tokenizer. Time comes from one of three sources, each labelled:
`--measure` runs every stage on a few sample rows here (stand-ins for the run's own models, which do
not exist yet: humback/sample_run.py); `--hardware NAME` turns published accelerator figures into time
(humback/hardware.py); an OpenAI-compatible role's prices and latency give money and time.

Estimates, not promises: the sample's dedup cannot see duplicates across the whole corpus, and how many
candidates a judge selects is known only once it has judged (the paper's shares stand in, or a cap).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from humback.config import ConfigError, RunConfig
from humback.errors import HumbackError
from humback.stats import StageKey, stage_keys

# The share of iteration t's selection that iteration t-1 had selected too, measured on the real web
# pages (BENCHMARKS.md, plan_accuracy_web*): 74 of 78 and 80 of 82 on 541 short segments, 18 of 18 and
# 19 of 22 on 303 longer ones, over two runs each.
SELECTED_AGAIN = (74 + 80 + 18 + 19) / (78 + 82 + 18 + 22)
# The paper's selected shares of its 502,133 candidates after iteration 2 (docs/method.md §4).
PAPER_SHARE = {4.5: 41_821 / 502_133, 4.0: 195_043 / 502_133}


class PlanError(HumbackError):
    """A recipe whose cost cannot be told from what was given; the message says what to add."""


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def _scaled(kept: int, read: int, total: int | None, whole: bool) -> int:
    if whole or not read:
        return kept
    if total is None:
        raise PlanError("cannot scale the sample: the source's size is unknown")
    return round(kept * total / read)


def seed_estimate(cfg: RunConfig, sample: int) -> tuple[list[dict], dict]:
    from humback.data.readers import count_records, hub_rows
    from humback.data.seed import demo_seed_path, sample_pairs

    pairs, read, whole = sample_pairs(cfg.seed.source, cfg.seed, sample)
    source = demo_seed_path() if cfg.seed.source == "demo" else Path(cfg.seed.source)
    total, how = read, "read whole"
    if not whole:
        if source.exists():  # a seed source is one file
            total, how = count_records(source), "counted"
        else:
            total, how = hub_rows(cfg.seed.source, cfg.seed.split), "hub metadata"
            if total is None:
                raise PlanError(
                    f"seed.source {cfg.seed.source}: the hub publishes no row count, so the sample of {read}"
                    f" rows cannot be scaled: plan with a local copy, or a --sample above its size"
                )
    eligible = _scaled(len(pairs), read, total, whole)
    info = {"rows": total, "how": how, "sample_rows": read, "sample_pairs": len(pairs), "eligible": eligible}
    return pairs, {**info, "pairs": min(cfg.seed.max_pairs, eligible)}


def corpus_estimate(cfg: RunConfig, sample: int) -> tuple[list[dict], dict]:
    from humback.data.readers import count_documents
    from humback.data.segment import demo_corpus_path, sample_segments

    corpus = demo_corpus_path() if cfg.segment.corpus == "demo" else cfg.segment.corpus
    got = sample_segments(corpus, cfg.segment, sample)
    docs, how = (got["documents"], "read whole") if got["whole"] else count_documents(corpus)
    if docs is None and cfg.segment.max_segments is None:
        raise PlanError(
            f"segment.corpus {cfg.segment.corpus}: {how}, so the sample cannot be scaled: plan with a"
            " local copy, or set segment.max_segments (the plan then assumes the corpus fills it)"
        )
    pool = _scaled(len(got["rows"]), got["documents"], docs, got["whole"]) if docs else None
    cap = cfg.segment.max_segments
    segments = pool if cap is None else (cap if pool is None else min(cap, pool))
    rows = got["rows"]
    if got["whole"] and cap is not None:  # the whole corpus was read: the stage's own sample of it, exactly
        from humback.data.segment import Sampler

        sampler = Sampler(cap, cfg.random_seed)
        for row in rows:
            sampler.offer(row)
        rows = sampler.held()
    info = {
        "documents": docs,
        "how": how,
        "sample_documents": got["documents"],
        "sample_segments": len(got["rows"]),
        "pool": pool,
        "segments": segments,
    }
    return rows, info


def share_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a share seen as k of n (Wilson 1927): honest at small n and at
    shares near 0 or 1, where the normal approximation is not."""
    p, d = k / n, 1 + z * z / n
    centre, half = (p + z * z / (2 * n)) / d, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def selected_estimate(cfg: RunConfig, candidates: int, measured: dict | None) -> tuple[int, str]:
    """How many candidates iteration t selects, and on what basis. `measured`: the sample run's curate
    figures (`selected` of `candidates` judged by the stand-in judge)."""
    c = cfg.curate
    caps = [candidates]
    if c.max_selected is not None:
        caps.append(c.max_selected)
    if c.top_fraction is not None:
        caps.append(int(c.top_fraction * candidates))
    if measured is not None:
        k, n = measured["selected"], max(1, measured["candidates"])
        lo, hi = (min(caps + [round(x * candidates)]) for x in share_interval(k, n))
        # 48 sample rows tell a share to within several points at best: the interval says how far.
        return min(caps + [round(k / n * candidates)]), (
            f"the sample's share ({k} of {n} candidates) judged by the base model: 95 % interval"
            f" {lo}-{hi} rows"
        )
    share = next((s for t, s in sorted(PAPER_SHARE.items(), reverse=True) if c.threshold >= t), None)
    if share is not None:
        return min(caps + [round(share * candidates)]), f"the paper's share at threshold >= {c.threshold}"
    if len(caps) > 1:
        return min(caps), "the cap (curate.max_selected / top_fraction)"
    return candidates, "every candidate (no basis below threshold 4 without --measure: an upper bound)"


class Tokens:
    """Token counts of rendered prompts and examples with the run's model tokenizer."""

    def __init__(self, model: str):
        from humback.models import load_tokenizer

        self.tok = load_tokenizer(model)

    def count(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def prompt(self, messages: list[dict]) -> int:
        from humback.templates import render_prompt

        return self.count(render_prompt(self.tok, messages))

    def examples(self, pairs: list[dict], direction: str, cfg: RunConfig) -> tuple[float, float]:
        """Mean tokens per training example, and the share dropped as too long."""
        from humback.training.examples import encode

        enc = encode(self.tok, pairs, direction, cfg.train.tags, cfg.train.max_length)
        return _mean([len(e["input_ids"]) for e in enc.examples]), enc.dropped_too_long / len(pairs)


def _generation(rows: int, prompt: float, new_max: int, new_expected: float, passes: int = 1) -> dict:
    return {
        "rows": rows,
        "prompt_tokens": round(rows * prompt * passes),
        "generated_tokens": {"max": rows * new_max * passes, "expected": round(rows * new_expected * passes)},
    }


def estimate(cfg: RunConfig, data: dict, tokens: Tokens, measured: dict | None = None) -> dict:
    """Rows, tokens and disk per stage of `cfg`, from the sampled `data` (see `sample`) and, when given,
    what `sample_run.run_sample` measured (tokens per row as the meter counts them, the gates' and the
    judge's shares)."""
    from humback.prompts import SCORE_PREFIX
    from humback.rewrite import REWRITE_START
    from humback.scoring import NO_INSTRUCTION, judge_messages
    from humback.templates import backward_messages, rewrite_messages
    from humback.training.sft import plan as train_plan

    pairs, segments, seed, corpus = data["pairs"], data["segments"], data["seed"], data["corpus"]
    m = measured or {}

    def new_tokens(kind: str, estimate: float, basis: str) -> tuple[float, str]:
        if kind in m:
            return m[kind]["new_tokens"], f"measured on {m['rows']} sample rows (the base model standing in)"
        return estimate, basis

    n_seed, n_seg = seed["pairs"], corpus["segments"]
    instructions = [p["instruction"] for p in pairs]
    texts = [s["text"] for s in segments]
    pick = [(instructions[i % len(instructions)], t) for i, t in enumerate(texts)]
    instr_tokens = _mean([tokens.count(i) for i in instructions]) + 1  # + the end of turn
    text_tokens = _mean([tokens.count(t) for t in texts])
    stages: dict[str, dict] = {}
    seed_bytes = _mean([len(json.dumps(p)) for p in pairs])
    seg_bytes = _mean([len(json.dumps(s)) for s in segments])
    stages["seed"] = {"rows": n_seed, "disk_bytes": round(n_seed * seed_bytes)}
    stages["segment"] = {"rows": n_seg, "disk_bytes": round(n_seg * seg_bytes)}
    backward_mean, backward_drop = tokens.examples(pairs, "backward", cfg)
    forward_mean, forward_drop = tokens.examples(pairs, "forward", cfg)
    curated = [{"instruction": i, "response": t, "tag": "augmented"} for i, t in pick]
    curated_mean, curated_drop = tokens.examples(curated, "forward", cfg)

    def train(key: str, n_curated: int, mean_tokens: float, dropped: float) -> None:
        n = round(n_seed * (1 - dropped)) + round(n_curated * (1 - curated_drop))
        p = train_plan(max(1, n), cfg.train, 1)
        stages[key] = {
            "rows": n,
            "steps": p.steps,
            "batch_size": p.batch,
            "train_tokens": round(p.steps * p.batch * mean_tokens),
        }

    train("train:myx", 0, backward_mean, backward_drop)
    prompt = _mean([tokens.prompt(backward_messages(t)) for t in texts])
    a = cfg.augment
    # M_yx is trained to write instructions like the seed's; measured, its stand-in's length (the base
    # model after a few backward steps: sample_run.py), otherwise the seed instructions'.
    expected, basis = new_tokens(
        "augment", min(a.max_new_tokens, instr_tokens), "the seed instructions' length"
    )
    if "augment" in m:
        basis = f"measured on {m['rows']} sample rows (M_yx's stand-in: the base model trained backward)"
    stages["augment"] = {
        **_generation(n_seg, prompt, a.max_new_tokens, expected),
        "expected_basis": basis,
        "disk_bytes": round(n_seg * (seg_bytes + 4 * instr_tokens)),
    }
    train("train:m0", 0, forward_mean, forward_drop)
    c = cfg.curate
    new = 0 if c.method == "expected" and c.max_new_tokens == 0 else c.max_new_tokens
    replies = c.k if c.method == "mean-of-k" else 1
    response_tokens = text_tokens + 1
    judge_new, judge_basis = new_tokens("curate", new, "judge replies run to max_new_tokens")
    # Every prompt below holds an instruction: measured, M_yx's stand-in's are not the seed's length.
    longer = m["augment"]["new_tokens"] - instr_tokens if "augment" in m else 0.0
    if "curate" in m:  # the meter counted every reply of a judged row
        judge_new /= replies
    judge_prompt = _mean([tokens.prompt(judge_messages(i, t)) for i, t in pick]) + longer
    if c.method == "expected":  # the score's own pass reads the prompt again, then reasoning and "Score:"
        rescore = (judge_prompt + judge_new if new else 0) + tokens.count(SCORE_PREFIX)
    # Counted as the meter counts a forward pass: the rendered prompt, the response and its end of turn.
    forward = _mean([tokens.prompt([{"role": "user", "content": i}]) for i, _ in pick]) + longer
    forward += tokens.prompt(NO_INSTRUCTION) + 2 * response_tokens
    # The gates skip candidates before any model reads them: the sample's share of M_yx's stand-in's.
    skipped = round(n_seg * m["curate"]["skipped_share"]) if "curate" in m else 0
    n_judged = n_seg - skipped
    selected_before = None  # the previous iteration's selection, whose rewrites the cache holds
    for t in range(1, cfg.iterations + 1):
        if c.judged:
            judged = _generation(n_judged, judge_prompt, new, judge_new, replies)
            if c.method == "expected":
                judged["prompt_tokens"] += round(n_judged * rescore)
        else:
            judged = _generation(n_judged, 0, 0, 0)
        if c.forward_signals:  # two passes: the response after its instruction, and alone
            judged["prompt_tokens"] += round(n_judged * forward)
        n_sel, basis = selected_estimate(cfg, n_seg, m.get("curate"))
        stages[f"curate:{t}"] = {
            **judged,
            "rows": n_seg,
            "skipped": skipped,
            "expected_basis": judge_basis,
            "selected": n_sel,
            "selected_basis": basis,
            "disk_bytes": round(n_seg * (seg_bytes + 4 * instr_tokens + 200) + n_sel * seg_bytes),
        }
        if cfg.rewrite.enabled:
            r = cfg.rewrite
            begin = REWRITE_START if r.begin_reply else ""
            rw_prompt = (
                m["rewrite"]["prompt_tokens"]
                if "rewrite" in m
                else _mean([tokens.prompt(rewrite_messages(i, t, begin)) for i, t in pick])
            )
            rw_new, rw_basis = new_tokens(
                "rewrite", min(r.max_new_tokens, response_tokens + 3), "a rewrite as long as its original"
            )
            # The rewriter is the same model every iteration, so a candidate selected again is a cache
            # hit; a stronger judge keeps nearly all of its predecessor's picks.
            cached = selected_before and cfg.generation.cache
            hits = round(min(n_sel, selected_before) * SELECTED_AGAIN) if cached else 0
            stages[f"rewrite:{t}"] = {
                **_generation(n_sel - hits, rw_prompt, r.max_new_tokens, rw_new),
                "rows": n_sel,
                "cache_hits": hits,
                "expected_basis": rw_basis,
                "disk_bytes": round(n_sel * seg_bytes * 3.2),
            }
            selected_before = n_sel
        mean = (n_seed * forward_mean + n_sel * (curated_mean + longer)) / (n_seed + n_sel)
        train(f"train:m{t}", n_sel, mean, 0.0)
    missing = set(stage_keys(cfg.iterations, cfg.rewrite.enabled)) - set(stages)
    assert not missing, missing  # every stage of the run has a line
    return {k: stages[k] for k in stage_keys(cfg.iterations, cfg.rewrite.enabled)}


def asked(st: dict) -> int:
    """The rows of a planned stage that reach its model: less those the gates skip or the cache answers."""
    return st["rows"] - st.get("skipped", 0) - st.get("cache_hits", 0)


def roles_of(key: str) -> str | None:
    """The generation role a stage runs (None for data and training stages)."""
    return {"augment": "backward", "curate": "judge", "rewrite": "rewriter"}.get(StageKey.parse(key).kind)


def api_costs(cfg: RunConfig, stages: dict) -> None:
    """Money and time of each stage an OpenAI-compatible role runs, from its prices and latency."""
    for key, st in stages.items():
        role = roles_of(key)
        if role is None or "prompt_tokens" not in st:
            continue
        engine = cfg.generation.role(role)
        if engine.backend != "openai":
            continue
        if engine.price_input is None or engine.price_output is None:
            raise ConfigError(
                f"generation.{role}: an openai role needs its prices to be planned: set"
                f" generation.{role}.price_input and generation.{role}.price_output (US dollars per"
                " million prompt / generated tokens; 0 for a server of your own)"
            )
        gen = st["generated_tokens"]
        st["cost_usd"] = {
            k: round((st["prompt_tokens"] * engine.price_input + gen[k] * engine.price_output) / 1e6, 2)
            for k in ("max", "expected")
        }
        if engine.latency_s is not None:
            k = cfg.curate.k if key.startswith("curate") and cfg.curate.method == "mean-of-k" else 1
            requests = asked(st) * k
            st.setdefault("seconds", {})["api"] = round(requests * engine.latency_s / engine.concurrency, 1)


def sample(cfg: RunConfig, rows: int) -> dict:
    """The seed and corpus samples, their scaled sizes, and the seconds the two stages' rules took on them
    scaled to the whole sources (the data stages' time: they run no model)."""
    start = time.perf_counter()
    pairs, seed = seed_estimate(cfg, rows)
    seed_s = (time.perf_counter() - start) * max(1, seed["rows"]) / max(1, seed["sample_rows"])
    start = time.perf_counter()
    segments, corpus = corpus_estimate(cfg, rows)
    docs = corpus["documents"] or corpus["sample_documents"]
    segment_s = (time.perf_counter() - start) * docs / max(1, corpus["sample_documents"])
    if not pairs or not segments:
        raise PlanError(
            f"the sample kept {len(pairs)} seed pairs and {len(segments)} segments: nothing to plan from"
            " (raise --sample, or check the seed and segment sections)"
        )
    return {
        "pairs": pairs,
        "segments": segments,
        "seed": seed,
        "corpus": corpus,
        "seconds": {"seed": round(seed_s, 1), "segment": round(segment_s, 1)},
    }


def _seconds(st: dict, source: str, value: float) -> None:
    st.setdefault("seconds", {})[source] = round(value, 1) if value >= 1 else round(value, 4)


def add_times(
    cfg: RunConfig, stages: dict, data: dict, measured: dict | None, hw: str | None, params
) -> None:
    """Seconds per stage from each source asked for: 'measured' (this machine), 'hardware' (published
    figures), 'api' (an openai role's latency); money for openai roles."""
    from humback.hardware import generation_seconds, training_seconds

    api_costs(cfg, stages)
    for key, st in stages.items():
        kind, role = StageKey.parse(key).kind, roles_of(key)
        engine = cfg.generation.role(role) if role else None
        if measured is not None:
            if kind in ("seed", "segment"):
                _seconds(st, "measured", data["seconds"][kind])
            elif kind == "train":
                _seconds(
                    st,
                    "measured",
                    measured["train"]["fixed_s"] + st["train_tokens"] * measured["train"]["token_s"],
                )
            elif kind in measured:
                got = measured[kind]
                _seconds(st, "measured", got["load_s"] + asked(st) * got["row_s"])
                if engine.backend == "openai" and "api" not in st.get("seconds", {}):
                    _seconds(st, "api", asked(st) * got["latency_s"] / engine.concurrency)
        if hw is None or kind in ("seed", "segment"):
            continue
        if kind == "train":
            got = training_seconds(hw, params(cfg.model), st["train_tokens"], cfg.train.method == "lora")
        elif engine.backend == "openai":
            continue  # the server's hardware is not this plan's to tell
        else:
            n = params(engine.model or cfg.model)
            gen = st["generated_tokens"]["expected"]
            got = generation_seconds(hw, n, 2 * n, st["prompt_tokens"], gen, engine.tensor_parallel_size)
        _seconds(st, "hardware", got["seconds"])
        st["hardware_arithmetic"] = got["arithmetic"]


def plan(
    cfg: RunConfig,
    *,
    rows: int = 200,
    measure: bool = False,
    hardware: str | None = None,
    params: float | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """The plan of `cfg` (see the module's docstring), as plan.json holds it."""
    from humback.hardware import ASSUMPTIONS
    from humback.hardware import hardware as accelerator
    from humback.models import parameter_count

    if hardware is not None:
        accelerator(hardware)  # an unknown name fails before any work
    data = sample(cfg, rows)
    seed, corpus = data["seed"], data["corpus"]
    log(f"[plan] sample: {seed['sample_rows']} seed rows, {corpus['sample_documents']} documents")
    tokens = Tokens(cfg.model)
    measured = None
    if measure:
        from humback.sample_run import run_sample

        measured = run_sample(cfg, data["pairs"], data["segments"], log=log)
    stages = estimate(cfg, data, tokens, measured)
    sizes: dict[str, int] = {}

    def size(name: str) -> float:
        if params is not None and name == cfg.model:
            return params
        if name not in sizes:
            sizes[name] = parameter_count(name)
        return sizes[name]

    n = size(cfg.model)
    for key, st in stages.items():
        if key.startswith("train:"):
            st["disk_bytes"] = 4 * n  # a float32 checkpoint
    add_times(cfg, stages, data, measured, hardware, size)
    totals = {
        "prompt_tokens": sum(st.get("prompt_tokens", 0) for st in stages.values()),
        "generated_tokens": {
            k: sum(st.get("generated_tokens", {}).get(k, 0) for st in stages.values())
            for k in ("max", "expected")
        },
        "train_tokens": sum(st.get("train_tokens", 0) for st in stages.values()),
        "disk_bytes": sum(st.get("disk_bytes", 0) for st in stages.values()),
    }
    for source in ("measured", "hardware", "api"):
        got = [st["seconds"][source] for st in stages.values() if source in st.get("seconds", {})]
        if got:
            totals.setdefault("seconds", {})[source] = round(sum(got), 1)
    costs = [st["cost_usd"]["expected"] for st in stages.values() if "cost_usd" in st]
    if costs:
        totals["cost_usd"] = round(sum(costs), 2)
    from humback.budget import forecast

    return {
        "name": cfg.name,
        "model": cfg.model,
        "parameters": n,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sample": rows,
        "inputs": {"seed": data["seed"], "corpus": data["corpus"]},
        "time_sources": {
            "measured": "this machine, each stage run on a few sample rows (--measure)",
            "hardware": f"{hardware}: published peak figures x assumed efficiencies {ASSUMPTIONS}"
            if hardware
            else None,
            "api": "an openai role's latency x rows / concurrency",
        },
        "stages": stages,
        "sample_run": measured,  # what --measure found on the sample rows (None without it)
        "totals": totals,
        "budget": forecast(cfg.budget, stages),  # where the run would stop at the config's budget
    }

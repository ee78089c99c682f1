"""What a run folder's manifest says, read once for everyone who shows it: each stage's key as fields
(stats.StageKey), the data funnel from the corpus to each iteration's selection, and the closing summary
table. `humback status`, the pipeline's summary, the report, the viewer and the dataset card all read
these; none of them parses stage keys or counts the funnel on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from humback.budget import planned_seconds
from humback.rundir import RunDir
from humback.stats import StageKey, stage_keys


def stage_stats(manifest: dict) -> dict[str, dict]:
    """Stage key -> its recorded stats ({} where none were recorded or they are not an object)."""
    stages = manifest.get("stages") or {}
    return {
        k: (v.get("stats") if isinstance(v, dict) and isinstance(v.get("stats"), dict) else {})
        for k, v in stages.items()
    }


def finished_iterations(manifest: dict) -> list[int]:
    """The iterations whose curation finished, in order."""
    keys = [
        StageKey.parse(k)
        for k, v in (manifest.get("stages") or {}).items()
        if isinstance(v, dict) and v.get("status") == "done"
    ]
    return sorted(k.iteration for k in keys if k is not None and k.kind == "curate")


@dataclass
class Step:
    """One step of the funnel: its rows, and what was dropped on the way to it (reason -> rows)."""

    name: str
    rows: int
    dropped: dict[str, int] = field(default_factory=dict)
    threshold: float | None = None


def funnel(manifest: dict) -> list[Step]:
    """Documents -> sections -> segments kept -> candidates -> selected per iteration, as far as the
    stages recorded them."""
    stats = stage_stats(manifest)
    seg = stats.get("segment", {})
    cut = seg.get("funnel") if isinstance(seg.get("funnel"), dict) else {}
    steps = [
        Step("documents", cut.get("documents")),
        Step("sections", cut.get("segments")),
        Step(
            "segments kept",
            seg.get("rows"),
            {k.removeprefix("dropped_"): v for k, v in cut.items() if k.startswith("dropped_")},
        ),
        Step("candidates", stats.get("augment", {}).get("rows")),
    ]
    curated = sorted(
        (key.iteration, s)
        for k, s in stats.items()
        if (key := StageKey.parse(k)) is not None and key.kind == "curate"
    )
    for t, s in curated:
        # Skipped before judging (gates, cuts) and passed over by selection (near-duplicates, diversity).
        dropped = {
            k: v
            for part in ("skipped", "passed_over")
            if isinstance(s.get(part), dict)
            for k, v in s[part].items()
        }
        steps.append(Step(f"selected, iteration {t}", s.get("selected"), dropped, s.get("threshold")))
        rewritten = stats.get(f"rewrite:{t}", {})
        if rewritten:
            kept = {k: rewritten[k] for k in ("kept_original", "dropped") if rewritten.get(k)}
            steps.append(Step(f"rewritten, iteration {t}", rewritten.get("rewritten"), kept))
    return [s for s in steps if isinstance(s.rows, int) and not isinstance(s.rows, bool)]


def _engine_note(stats: dict) -> str:
    if "backend" not in stats:
        return ""
    cached = f", {stats['cache_hits']} cached" if stats.get("cache_hits") else ""
    return f", {stats['backend']}{cached}"


def _note(key: StageKey, stats: dict) -> str:
    if key.kind == "curate":
        cut = ", ".join(f"{n} {reason}" for reason, n in (stats.get("skipped") or {}).items())
        ifd = f"; skipped: {cut}" if cut else ""
        directed = f", {stats['judge_directed']} judge-directed" if stats.get("judge_directed") else ""
        return (
            f"selected {stats['selected']} (score >= {stats['threshold']}{ifd}{directed}), parse failures "
            f"{stats['parse_failure_rate']:.0%}, mean score {stats['mean_score']}, histogram "
            f"{stats['score_histogram']}" + _engine_note(stats)
        )
    if key.kind == "train":
        loss = (
            ""
            if stats.get("first_loss") is None
            else f", loss {stats['first_loss']:.3f} -> {stats['last_loss']:.3f}"
        )
        return f"{stats['steps']} steps x batch {stats['batch_size']}, {stats['method']}{loss}"
    if key.kind == "segment":
        return f"funnel {stats['funnel']}"
    if key.kind == "seed":
        return f"drops {stats['drops']}"
    if key.kind == "rewrite":
        return (
            f"rewritten {stats['rewritten']} of {stats['selected']} (parsed {stats['parse_rate']:.0%}, passed"
            f" the checks {stats['pass_rate']:.0%}), outcomes {stats['outcome']}" + _engine_note(stats)
        )
    if key.kind == "augment":
        return (
            f"empty instructions {stats['empty_instructions']}, resumed rows {stats['resumed_rows']}"
            + _engine_note(stats)
        )
    return ""


def _shard_note(data: dict, key: StageKey) -> str:
    """Progress of a generating stage that runs (or ran, and was killed) on Ray: finished shards of all."""
    if "run_dir" not in data or key.kind not in ("augment", "curate"):
        return ""
    from humback.ray_runner import finished_shards, shard_folder

    run = RunDir(data["run_dir"])
    source, out = (
        (run.segments, run.candidates)
        if key.kind == "augment"
        else (run.candidates, run.scored(key.iteration))
    )
    if not shard_folder(out).is_dir():
        return ""
    done = len(finished_shards(out))
    size = data.get("config", {}).get("cluster", {}).get("shard_rows")
    if not size or not source.is_file():
        return f"ray: {done} shards finished"
    with open(source, "rb") as f:
        total = -(-sum(1 for _ in f) // size)
    return f"ray: {done} of {total} shards finished ({done / total:.0%})" if total else ""


def summary(data: dict) -> str:
    """The closing summary: rows per stage, score histograms, parse failures, where things are."""
    lines = [
        f"\nhumback run '{data.get('name', '?')}' in {data.get('run_dir', '?')}",
        f"{'stage':<10} {'status':<8} {'rows':>5} {'seconds':>8}  notes",
    ]
    config = data.get("config", {})
    rewrite = isinstance(config.get("rewrite"), dict) and bool(config["rewrite"].get("enabled"))
    keys = list(dict.fromkeys(stage_keys(config.get("iterations", 0), rewrite) + list(data["stages"])))
    for key in keys:
        st = data["stages"].get(key, {"status": "pending"})
        stats = st.get("stats", {})
        rows = stats.get("rows", stats.get("examples", ""))
        stage = StageKey.parse(key)
        try:
            if st["status"] == "stopped":
                halt = st.get("stopped", {})
                done, left, unit = halt.get("done"), halt.get("left"), halt.get("unit", "rows")
                note = f"stopped by {halt.get('limit')}: {done} {unit} done"
                note += "" if left is None else f", {left} left"  # a stage stopped before it started
            else:
                note = _note(stage, stats) if st["status"] == "done" else _shard_note(data, stage)
        except (KeyError, TypeError, ValueError) as e:  # stats of an older version, or edited by hand
            note = f"(stats incomplete: {e})"
        lines.append(f"{key:<10} {st['status']:<8} {rows!s:>5} {st.get('seconds', '')!s:>8}  {note}")
    outs = {
        StageKey.parse(k): st.get("outputs", {})
        for k, st in data["stages"].items()
        if st.get("status") == "done"
    }
    # What the last train stage read: the rewritten rows when the run rewrote them, else the selection.
    curated = [
        o.get("rewritten") or o.get("selected")
        for k, o in outs.items()
        if k.kind in ("curate", "rewrite") and ("selected" in o or "rewritten" in o)
    ]
    models = [o["model"] for k, o in outs.items() if k.kind == "train" and "model" in o]
    if curated:
        lines.append(f"curated dataset: {curated[-1]}")
    if models:
        lines.append("models: " + ", ".join(models))
    return "\n".join(lines)


def short_number(n) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}" if isinstance(n, float) else str(n)


def _time(seconds: dict | None) -> str:
    if not seconds:
        return "-"
    return ", ".join(f"{_clock(v)} ({k})" for k, v in seconds.items())


def _clock(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.2g} s"


def _plan_row(name: str, st: dict, cost) -> str:
    gen = st.get("generated_tokens", {})
    cells = [
        st.get("rows"),
        st.get("prompt_tokens"),
        gen.get("expected"),
        gen.get("max"),
        st.get("train_tokens"),
    ]
    money = f", ${cost:,.2f}" if cost is not None else ""
    return (
        f"{name:<10} "
        + " ".join(f"{short_number(c):>7}" for c in cells)
        + f" {short_number(st.get('disk_bytes')) + 'B':>7}  {_time(st.get('seconds'))}{money}"
    )


def plan_table(plan: dict) -> str:
    """`humback plan`'s table: per stage rows, prompt / generated (expected, max) / training tokens,
    disk and time by source; the totals and where each figure came from."""
    seed, corpus = plan["inputs"]["seed"], plan["inputs"]["corpus"]
    head = ("rows", "prompt", "gen exp", "gen max", "train", "disk")
    lines = [
        (
            f"humback plan '{plan['name']}': model {plan['model']}"
            f" ({short_number(plan['parameters'])} parameters)"
        ),
        (
            f"seed: {seed['pairs']} pairs of {short_number(seed['rows'])} rows ({seed['how']}; sample"
            f" {seed['sample_rows']} rows -> {seed['sample_pairs']} pairs)"
        ),
        (
            f"corpus: {short_number(corpus['documents'])} documents ({corpus['how']}; sample"
            f" {corpus['sample_documents']} -> {corpus['sample_segments']} segments), pool"
            f" {short_number(corpus['pool'])}, kept {corpus['segments']}"
        ),
        f"{'stage':<10} " + " ".join(f"{h:>7}" for h in head) + "  time",
    ]
    for key, st in plan["stages"].items():
        lines.append(_plan_row(key, st, st["cost_usd"]["expected"] if "cost_usd" in st else None))
    t = plan["totals"]
    lines.append(_plan_row("total", {**t, "rows": None}, t.get("cost_usd")))
    notes = {st.get("selected_basis") for st in plan["stages"].values()} - {None}
    lines += [f"selected: {n}" for n in sorted(notes)]
    for key, st in plan["stages"].items():  # rows that reach no model, so cost no tokens
        if st.get("skipped"):
            lines.append(
                f"{key}: {st['skipped']} of {st['rows']} candidates skipped by the gates (the sample's share)"
            )
        if st.get("cache_hits"):
            lines.append(
                f"{key}: {st['cache_hits']} of {st['rows']} rows answered by the response cache"
                " (selected again)"
            )
    sources = plan["time_sources"]
    lines += [f"time ({k}): {sources[k]}" for k in t.get("seconds") or {}]
    lines += [f"budget: {line}" for line in plan.get("budget", [])]
    return "\n".join(lines)


# Plan vs actual, per stage: (column, the plan's figure, the run's figure), the run's from the stage's
# stats and what its engines were metered spending (manifest `spent`).
PLAN_COLUMNS = ("rows", "prompt tokens", "generated tokens", "train tokens", "seconds")


def plan_rows(plan: dict, manifest: dict) -> list[tuple[str, dict[str, tuple]]]:
    """Each planned stage with its figures planned and recorded: {column: (plan, actual)}. Planned time
    is `planned_seconds`; generated tokens are the plan's expected count."""
    out = []
    for key, st in plan.get("stages", {}).items():
        done = (manifest.get("stages") or {}).get(key, {})
        stats, spent = done.get("stats") or {}, done.get("spent") or {}
        planned = planned_seconds(st)
        generating = "prompt_tokens" in st
        out.append(
            (
                key,
                {
                    "rows": (st.get("rows"), stats.get("rows", stats.get("examples"))),
                    "prompt tokens": (
                        st.get("prompt_tokens"),
                        spent.get("prompt_tokens") if generating else None,
                    ),
                    "generated tokens": (
                        (st.get("generated_tokens") or {}).get("expected"),
                        spent.get("generated_tokens") if generating else None,
                    ),
                    "train tokens": (st.get("train_tokens"), stats.get("tokens_seen")),
                    "seconds": (planned, spent.get("seconds", done.get("seconds"))),
                },
            )
        )
    return out


def plan_vs_actual(plan: dict, manifest: dict) -> str:
    """Planned and recorded figures side by side (plan / actual), per stage."""
    lines = [f"{'plan / actual':<14} " + " ".join(f"{c:>17}" for c in PLAN_COLUMNS)]
    for key, cells in plan_rows(plan, manifest):
        lines.append(
            f"{key:<14} "
            + " ".join(
                f"{short_number(a):>8} / {short_number(b):<6}" for a, b in (cells[c] for c in PLAN_COLUMNS)
            )
        )
    return "\n".join(lines)


def status_table(run_dir: str | Path) -> str:
    """`humback status`: the summary of the run folder's manifest, and its plan beside what ran when the
    folder holds one (humback plan)."""
    run = RunDir(run_dir)
    planned_only = run.plan_path.exists() and not run.manifest_path.exists()
    manifest = {} if planned_only else run.read_manifest()  # no manifest and no plan: its clear error
    plan = read_plan(run.plan_path) if run.plan_path.exists() else None
    parts = [summary(manifest)] if manifest else []
    if plan is not None:
        parts.append(plan_table(plan) if not manifest else plan_vs_actual(plan, manifest))
    return "\n\n".join(parts)


def read_plan(path: Path) -> dict | None:
    """A plan.json humback wrote, or None when the file is not one (left alone)."""
    import json

    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) and {"stages", "time_sources"} <= set(plan) else None

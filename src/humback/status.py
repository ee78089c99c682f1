"""What a run folder's manifest says, read once for everyone who shows it: each stage's key as fields
(stats.StageKey), the data funnel from the corpus to each iteration's selection, and the closing summary
table. `humback status`, the pipeline's summary, the report, the viewer and the dataset card all read
these; none of them parses stage keys or counts the funnel on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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


def status_table(run_dir: str | Path) -> str:
    """`humback status`: the summary of the run folder's manifest."""
    return summary(RunDir(run_dir).read_manifest())

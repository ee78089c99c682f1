"""`humback report`: one Markdown page per run, with plots, from what the run directory already holds
(manifest stats, scored/selected rows, training loss curves, eval/metrics.json when `humback eval` ran),
and the same as one self-contained report/index.html (plots inlined, a sample of rows; no request leaves it).

Sections: the data funnel, curation score histograms per iteration, instruction and response lengths of
the pool vs what was selected, training loss curves, and the evaluation metrics. Plots are PNG files
(matplotlib, no display needed) beside report.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from humback.files import atomic_write, ensure_dir, write_via
from humback.records import RecordError, is_number, read_json, read_jsonl
from humback.rundir import RunDir
from humback.status import PLAN_COLUMNS, funnel, plan_rows, read_plan, short_number, stage_stats

SECTIONS = (
    "Data funnel",
    "Curation scores",
    "Lengths: pool vs selected",
    "Training loss",
    "Evaluation",
    "Plan vs actual",
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    # Through a fresh temp file: a link planted at report/<name>.png is refused, never written through.
    write_via(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    _plt().close(fig)
    return path.name


def _funnel_plot(steps: list[tuple[str, int]], out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(steps)))
    names, counts = [s[0] for s in steps][::-1], [s[1] for s in steps][::-1]
    ax.barh(names, counts, color="#4c78a8")
    for y, c in enumerate(counts):
        ax.text(c, y, f" {c:,}", va="center")
    ax.set_xlabel("rows")
    ax.set_title("Data funnel")
    return _save(fig, out)


def _score_plot(run: RunDir, iterations: list[int], out: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, len(iterations), figsize=(4 * len(iterations), 3), squeeze=False)
    for ax, t in zip(axes[0], iterations):
        scores = [r["score"] for r in read_jsonl(run.scored(t)) if r.get("score") is not None]
        ax.hist(scores, bins=[1 + 0.25 * i for i in range(17)], color="#f58518", edgecolor="white")
        ax.set_title(f"iteration {t}: {len(scores)} scored")
        ax.set_xlabel("score (1-5)")
    axes[0][0].set_ylabel("candidates")
    return _save(fig, out)


def _length_plot(pool: list[dict], selected: list[dict], out: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, key in zip(axes, ("instruction", "response")):
        ax.hist([len(r[key]) for r in pool], bins=20, alpha=0.6, label=f"pool ({len(pool)})")
        ax.hist([len(r[key]) for r in selected], bins=20, alpha=0.6, label=f"selected ({len(selected)})")
        ax.set_xlabel(f"{key} characters")
        ax.legend()
    return _save(fig, out)


def _loss_plot(curves: dict[str, list[dict]], out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, curve in curves.items():
        ax.plot([c["step"] for c in curve], [c["loss"] for c in curve], marker="o", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend()
    return _save(fig, out)


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join("–" if v is None else str(v) for v in row) + " |" for row in rows
    ]


METRICS = (
    "heldout",
    "nll_pairs",
    "answer_pairs",
    "backward",
    "forward",
    "win_rates",
    "judges",
)  # what humback eval writes


def _eval_section(metrics: dict) -> list[str]:
    lines = [
        (
            f"Held-out data: `{metrics['heldout']}` ({metrics['nll_pairs']} pairs for NLL,"
            f" {metrics['answer_pairs']} instructions for win rates)."
        ),
        "",
        "**Backward model** (instruction given response):",
        "",
    ]
    lines += _table(
        ["model", "instruction NLL (nats/token)", "ROUGE-L of sampled instructions"],
        [[k, v["instruction_nll"], v["rouge_l"]] for k, v in metrics["backward"].items()],
    )
    lines += ["", "**Forward models**:", ""]
    lines += _table(
        ["model", "reference-answer NLL (nats/token)", "mean answer chars"],
        [[k, v["reference_nll"], v["mean_answer_chars"]] for k, v in metrics["forward"].items()],
    )
    wr = metrics["win_rates"]
    lines += ["", f"**Win rates** (judge `{wr['judge']}`, {wr['method']}, both answer orders):", ""]
    lines += _table(
        ["pair", "win rate", "length-controlled", "n", "mean chars (first / second)"],
        [
            [
                k,
                v["win_rate"],
                v.get("lc_win_rate"),
                v["n"],
                f"{v.get('mean_chars_first')} / {v.get('mean_chars_second')}",
            ]
            for k, v in wr["pairs"].items()
        ],
    )
    lines += ["", "**Judges** (ROC-AUC on held-out pairs vs built negatives):", ""]
    rows = []
    for it, j in metrics["judges"].items():
        for signal, e in j["signals"].items():
            rows.append(
                [
                    it,
                    signal,
                    e["auc"],
                    e.get("auc_mismatch"),
                    e.get("auc_truncated"),
                    e.get("auc_boilerplate"),
                ]
            )
    lines += _table(["iteration", "signal", "AUC", "mismatch", "truncated", "boilerplate"], rows)
    if "lm_eval" in metrics:
        lines += [
            "",
            "**lm-evaluation-harness**:",
            "",
            "```",
            json.dumps(metrics["lm_eval"], indent=1),
            "```",
        ]
    return lines


def report(run_dir: str | Path) -> Path:
    """Write run_dir/report/report.md and its plots; return the report's path."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    manifest = run.read_manifest()
    out = run.report_dir
    ensure_dir(out)
    md = [f"# humback run `{manifest.get('name', run_dir.name)}`", ""]

    md += [f"## {SECTIONS[0]}", ""]
    steps = [(step.name, step.rows) for step in funnel(manifest)]
    md += (
        [f"![data funnel]({_funnel_plot(steps, out / 'funnel.png')})", ""]
        if steps
        else ["(no stage finished yet)", ""]
    )
    md += _table(["step", "rows"], [[n, c] for n, c in steps]) + [""]

    iterations = run.iterations()
    md += [f"## {SECTIONS[1]}", ""]
    if iterations:
        md += [f"![curation scores]({_score_plot(run, iterations, out / 'scores.png')})", ""]
        stats = stage_stats(manifest)
        keys = ("rows", "selected", "threshold", "parse_failure_rate", "mean_score", "judge_directed")
        rows = []
        for t in iterations:
            st = stats.get(f"curate:{t}", {})
            skipped = st.get("skipped") if isinstance(st.get("skipped"), dict) else {}
            rows.append(
                [t] + [st.get(k) for k in keys] + [", ".join(f"{r} {n}" for r, n in skipped.items()) or "-"]
            )
        md += _table(
            [
                "iteration",
                "candidates",
                "selected",
                "threshold",
                "parse failures",
                "mean score",
                "judge-directed",
                "skipped before judging",
            ],
            rows,
        )
    else:
        md += ["(no curation yet)"]
    md += ["", f"## {SECTIONS[2]}", ""]
    pool: list[dict] = []
    if iterations:
        t = iterations[-1]
        text = ("instruction", "response")
        pool = list(read_jsonl(run.candidates, required=text, strings=text))
        sel_file = run.selected(t)
        selected = (
            list(read_jsonl(sel_file, required=text, strings=text))
            if sel_file.is_file() and sel_file.stat().st_size
            else []
        )
        md += [f"Iteration {t}.", "", f"![lengths]({_length_plot(pool, selected, out / 'lengths.png')})", ""]
    else:
        md += ["(no curation yet)", ""]

    md += [f"## {SECTIONS[3]}", ""]
    curves = {}
    for p in sorted(run.models.glob("*/humback_train.json")):
        curve = read_json(p, keys=("loss_curve",), fix="retrain the model (humback run --force train)")[
            "loss_curve"
        ]
        if not isinstance(curve, list) or not all(
            isinstance(e, dict) and is_number(e.get("step")) and is_number(e.get("loss")) for e in curve
        ):
            raise RecordError(f"{p}: key 'loss_curve' must be a list of {{step, loss}} numbers")
        if curve:
            curves[p.parent.name] = curve
    md += (
        [f"![training loss]({_loss_plot(curves, out / 'loss.png')})", ""]
        if curves
        else ["(no model trained yet)", ""]
    )

    md += [f"## {SECTIONS[4]}", ""]
    metrics_file = run.eval_dir / "metrics.json"
    if metrics_file.is_file():
        metrics = read_json(metrics_file, keys=METRICS, fix=f"rerun humback eval {run_dir}")
        try:
            md += _eval_section(metrics)
        except (
            KeyError,
            TypeError,
            AttributeError,
            ValueError,
        ) as e:  # a hand-edited file of the wrong shape
            where = f"key {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {str(e)[:80]}"
            raise RecordError(
                f"{metrics_file}: not the shape humback eval writes ({where}); rerun humback eval {run_dir}"
            ) from None
    else:
        md += [f"(not evaluated yet: `humback eval {run_dir} --heldout FILE`)"]
    md += ["", f"## {SECTIONS[5]}", "", *_plan_section(run, manifest)]
    path = out / "report.md"
    atomic_write(path, "\n".join(md) + "\n")
    atomic_write(
        out / "index.html",
        html_page(
            manifest.get("name", run_dir.name), "\n".join(md), out, _sample_rows(run, iterations, pool)
        ),
    )
    return path


def _plan_section(run: RunDir, manifest: dict) -> list[str]:
    """What `humback plan` estimated beside what the run recorded, per stage (status.plan_rows)."""
    plan = read_plan(run.plan_path) if run.plan_path.exists() else None
    if plan is None:
        return [f"(no plan: `humback plan CONFIG --run-dir {run.root}` writes one before the run)"]
    rows = [
        [key] + [f"{short_number(a)} / {short_number(b)}" for a, b in (cells[c] for c in PLAN_COLUMNS)]
        for key, cells in plan_rows(plan, manifest)
    ]
    return [
        "Each cell is plan / actual. Actual tokens are what the engines were metered reading and writing"
        " (replies from the response cache cost none); planned time is from "
        + (", ".join((plan.get("totals") or {}).get("seconds") or {}) or "no source")
        + ".",
        "",
        *_table(["stage", *PLAN_COLUMNS], rows),
    ]


def _sample_rows(run: RunDir, iterations: list[int], pool: list[dict], n: int = 15) -> list[dict]:
    """The last iteration's n best and n worst scored candidates (from `pool`, the candidates), for a
    look at what curation kept."""
    if not iterations:
        return []
    t = iterations[-1]
    texts = {r["id"]: r for r in pool}
    scored = [r for r in read_jsonl(run.scored(t)) if r.get("score") is not None and r["id"] in texts]
    scored.sort(key=lambda r: r["score"], reverse=True)
    picks = scored[:n] + scored[max(n, len(scored) - n) :]  # best n, then worst n not already shown
    return [
        {
            "id": r["id"],
            "score": r["score"],
            "instruction": texts[r["id"]]["instruction"],
            "response": texts[r["id"]]["response"][:600],
            "iteration": t,
        }
        for r in picks
    ]


# Nothing leaves the page: no script, no request; images are inline data.
_HTML_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def html_page(name: str, md: str, folder: Path, rows: list[dict]) -> str:
    """One self-contained HTML file: the Markdown report rendered (python-markdown), its plots inlined as
    data URIs, and a sample of rows. Every text from the run is escaped: segments are untrusted web text."""
    import base64
    import html
    import re

    import markdown

    # The report's own Markdown holds run text only inside code spans and table cells; escaping it first
    # keeps any markup in it inert, and python-markdown leaves the escaped entities as they are.
    body = markdown.markdown(html.escape(md, quote=False), extensions=["tables", "fenced_code"])

    def inline(match: re.Match) -> str:
        png = folder / match.group(2)
        if not png.is_file() or "/" in match.group(2):
            return match.group(0)
        data = base64.b64encode(png.read_bytes()).decode()
        return f'<img alt="{match.group(1)}" src="data:image/png;base64,{data}"'

    body = re.sub(r'<img alt="([^"]*)" src="([^"]+\.png)"', inline, body)
    cells = "".join(
        f"<tr><td>{html.escape(str(r['score']))}</td><td>{html.escape(r['instruction'])}</td>"
        f"<td>{html.escape(r['response'])}</td></tr>"
        for r in rows
    )
    sample = (
        (
            f"<h2>Sample of rows (iteration {rows[0]['iteration']}: highest and lowest scores)</h2><table>"
            f"<tr><th>score</th><th>instruction</th><th>response (segment, first 600 "
            f"characters)</th></tr>{cells}"
            "</table>"
        )
        if rows
        else ""
    )
    style = (
        "body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 "
        "16px;color:#222}"
        "table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 6px;"
        "vertical-align:top;white-space:pre-wrap}img{max-width:100%}code{background:#f3f3f3}"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_HTML_CSP}">'
        f"<title>humback run {html.escape(name)}</title><style>{style}</style></head>"
        f"<body>{body}{sample}</body></html>\n"
    )

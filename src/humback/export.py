"""`humback export`: a run's curated dataset in chat-messages form (JSONL or Parquet) with a dataset card,
optionally pushed to the hub.

Each row: {id, messages: [{role: user, content: instruction}, {role: assistant, content: response}],
score, source: {segment_id, url}}. The card (README.md with YAML metadata) records where the data came
from, how many rows each step kept, the settings and models that made it, and the licence fields.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import yaml

from humback.errors import HumbackError
from humback.files import atomic_write, ensure_dir, is_temp_of, write_via
from humback.records import read_jsonl, write_jsonl
from humback.rundir import RunDir
from humback.status import finished_iterations, funnel, stage_stats

FORMATS = ("jsonl", "parquet")


class ExportError(HumbackError):
    """An export that cannot run as asked: nothing curated yet, an unknown format, a folder holding
    files humback did not write."""


def _leftover(path: Path) -> bool:
    """A temporary file a killed export left (`.train.jsonl.<random>.tmp`): its own, not a foreign file."""
    return path.is_file() and any(
        is_temp_of(path.name, w) for w in ("README.md", "train.jsonl", "train.parquet")
    )


def curated_rows(run_dir: Path, iteration: int, rewritten: bool | None = None) -> list[dict]:
    """The rows training used in `iteration`: its rewritten rows when the run rewrote them (by default:
    when they exist), else its selection; each says whether its response is a rewrite, and by whom."""
    run = RunDir(run_dir)
    if rewritten is None:
        rewritten = run.rewritten(iteration).is_file()
    selected = run.rewritten(iteration) if rewritten else run.selected(iteration)
    if not selected.is_file():
        raise ExportError(f"{selected} does not exist: run curation first (humback run) or pick --iteration")
    segments = (
        {str(s["id"]): s for s in read_jsonl(run.segments, required=("id",), unique_ids=True)}
        if run.segments.is_file()
        else {}
    )
    rows = []
    text = ("instruction", "response")
    for r in read_jsonl(selected, required=("id", *text), unique_ids=True, strings=text):
        seg = segments.get(str(r["id"]), {})
        how = r.get("rewrite") if isinstance(r.get("rewrite"), dict) else {}
        rewritten = how.get("status") == "rewritten"
        rows.append(
            {
                "id": r["id"],
                "messages": [
                    {"role": "user", "content": r["instruction"]},
                    {"role": "assistant", "content": r["response"]},
                ],
                "score": r.get("score"),
                "source": {"segment_id": r["id"], "url": seg.get("url")},
                **(
                    {
                        "rewritten": rewritten,
                        "rewriter": how.get("model"),
                        "original_response": r.get("original_response"),
                    }
                    if how
                    else {}
                ),
            }
        )
    return rows


def _get(data, *keys):
    """data[k1][k2]... or None when any level is missing or not an object (a hand-edited manifest)."""
    for k in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(k)
    return data


def _text(value, limit: int = 200) -> str:
    """A free-text value (a run name, a corpus path, a model id) as inert Markdown: one line, HTML escaped,
    the marks that open emphasis, links, images, code spans and tables backslash-escaped, so none can form
    (the value never starts a line, so list and heading marks are inert)."""
    flat = " ".join(str(value).split())[:limit]
    return re.sub(r"([\\`*_{}\[\]()#!|~])", r"\\\1", html.escape(flat, quote=True))


def _fence(block: str) -> str:
    """A code fence longer than any backtick run inside `block` (a value holding ``` cannot close it)."""
    longest = max((len(m) for m in re.findall(r"`+", block)), default=0)
    return "`" * max(3, longest + 1)


LICENSE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]{0,63}")  # hub licence ids: apache-2.0, cc-by-4.0, other


def dataset_card(
    manifest: dict, iteration: int, rows: int, files: list[str], license: str, repo: str | None
) -> str:
    cfg = manifest.get("config") or {}
    stats = stage_stats(manifest)
    rows_at = {step.name: step.rows for step in funnel(manifest)}
    lang = _get(cfg, "seed", "lang")
    meta = {
        "license": license,
        "language": [
            lang
            if isinstance(lang, str) and re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*", lang)
            else "und"
        ],
        "task_categories": ["text-generation"],
        "tags": ["instruction-backtranslation", "humback", "synthetic-instructions"],
        "size_categories": [
            "n<1K"
            if rows < 1000
            else "1K<n<10K"
            if rows < 10_000
            else "10K<n<100K"
            if rows < 100_000
            else "100K<n<1M"
            if rows < 1_000_000
            else "n>1M"
        ],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": f} for f in files]}],
    }

    def stat(stage: str, *keys):
        return _text(_get(stats, stage, *keys))

    def count(step: str) -> str:
        return _text(rows_at.get(step))

    cur = f"curate:{iteration}"
    rw = f"rewrite:{iteration}"
    title = repo or f"humback-{manifest.get('name', 'run')}"
    settings = yaml.safe_dump(
        {k: cfg.get(k) for k in ("augment", "curate", "generation")}, sort_keys=False
    ).rstrip()
    fence = _fence(settings)
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False, width=10_000).rstrip(),
        "---",
        "",
        f"# {_text(title)}",
        "",
        (
            "Instruction-response pairs made by instruction backtranslation (Li et al. 2023,"
            ' "Self-Alignment with'
        ),
        'Instruction Backtranslation") with the humback toolkit: a backward model',
        "wrote an instruction for each human-written web segment, and a judge kept the best pairs.",
        "",
        "## Sources",
        "",
        f"- seed data: {_text(_get(cfg, 'seed', 'source'))} ({stat('seed', 'rows')} pairs)",
        (
            f"- unlabelled corpus: {_text(_get(cfg, 'segment', 'corpus'))} ({count('documents')} documents,"
            f" {count('segments kept')} segments kept)"
        ),
        f"- base model: {_text(cfg.get('model'))}",
        "",
        "The responses are text from the corpus: its licence and terms apply to them. Set `license` above to",
        "match (`humback export --license`).",
        "",
        "## Counts",
        "",
        f"- candidates (one generated instruction per segment): {count('candidates')}",
        (
            f"- selected in iteration {iteration}: {count(f'selected, iteration {iteration}')}"
            f" (exported: {rows})"
        ),
        *(
            [
                (
                    f"- rewritten (Back-and-Forth Translation, Nguyen et al. 2024) by {stat(rw, 'model')}:"
                    f" {stat(rw, 'rewritten')} of {stat(rw, 'selected')} rows; the others keep their web"
                    " response (a rewrite that did not parse or failed a faithfulness check)"
                )
            ]
            if rw in stats
            else []
        ),
        (
            f"- curation: method {stat(cur, 'method')}, threshold {stat(cur, 'threshold')}, parse failures"
            f" {stat(cur, 'parse_failure_rate')}, mean response chars pool"
            f" {stat(cur, 'response_chars_pool')} vs"
            f" selected {stat(cur, 'response_chars_selected')}"
        ),
        "",
        "## Settings",
        "",
        fence + "yaml",
        settings,
        fence,
        "",
        "## Format",
        "",
        "JSON rows: `id`, `messages` (user instruction, assistant response), `score` (the curation score),",
        "`source` (`segment_id`, `url`); in a rewritten run also `rewritten` (whether the response is a",
        "rewrite), `rewriter` and `original_response` (the web text).",
        "",
    ]
    return "\n".join(lines)


def export(
    run_dir: str | Path,
    out: str | Path,
    iteration: int | None = None,
    fmt: str = "jsonl",
    license: str = "other",
    push_to_hub: str | None = None,
    private: bool = True,
) -> dict:
    """The curated rows of `iteration` (default: the last finished) as chat-messages JSONL or Parquet in
    `out`/data with a dataset card, optionally pushed to a hub dataset repo."""
    run_dir, out_dir = Path(run_dir), Path(out)
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}' (accepted: {', '.join(FORMATS)})")
    if not LICENSE.fullmatch(license):
        raise ExportError(
            f"--license {license[:80]!r}: give a licence id such as apache-2.0, cc-by-4.0 or other"
        )
    manifest = RunDir(run_dir).read_manifest()
    if iteration is None:
        done = finished_iterations(manifest)
        if not done:
            raise ExportError(f"{run_dir}: no finished curation to export")
        iteration = max(done)
    # The rewritten rows only when this run's manifest says the rewrite stage finished (a file left by an
    # earlier configuration is not what the last training read).
    stage = manifest.get("stages", {}).get(f"rewrite:{iteration}", {})
    rows = curated_rows(
        run_dir, iteration, rewritten=isinstance(stage, dict) and stage.get("status") == "done"
    )
    # Only a new or empty folder, or one an earlier export wrote: everything else in it would be
    # overwritten (or, before, uploaded with it).
    written = {"README.md", "data/train.jsonl", "data/train.parquet", "data"}
    if out_dir.is_dir():
        # A link (a `data` pointing at another folder) is never one of ours: it is refused like a foreign
        # file.
        foreign = sorted(
            str(p.relative_to(out_dir)) + (" (a symbolic link)" if p.is_symlink() else "")
            for p in out_dir.rglob("*")
            if (str(p.relative_to(out_dir)) not in written and not _leftover(p)) or p.is_symlink()
        )
        if foreign:
            raise ExportError(
                f"export folder {out_dir} holds other files ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}): give a new or empty folder"
            )
    ensure_dir(out_dir / "data")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = "data/train.parquet"
        table = pa.Table.from_pylist(rows)
        write_via(out_dir / name, lambda tmp: pq.write_table(table, tmp))
    else:
        name = "data/train.jsonl"
        write_jsonl(out_dir / name, rows)
    atomic_write(
        out_dir / "README.md", dataset_card(manifest, iteration, len(rows), [name], license, push_to_hub)
    )
    result = {
        "rows": len(rows),
        "iteration": iteration,
        "files": [str(out_dir / name), str(out_dir / "README.md")],
    }
    if push_to_hub:
        result["url"] = upload(out_dir, [name, "README.md"], push_to_hub, private)
    return result


def upload(folder: Path, files: list[str], repo: str, private: bool) -> str:
    """Push the files this export wrote (data + card), and nothing else in the folder, to a dataset repo on
    the hub; the token comes from the environment (HF_TOKEN) or `huggingface-cli login`, never from
    humback's files."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo,
        repo_type="dataset",
        folder_path=str(folder),
        allow_patterns=files,
        commit_message="humback export",
    )
    return str(getattr(info, "commit_url", repo))

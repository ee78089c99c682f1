"""`humback export`: a run's curated dataset in chat-messages form (JSONL or Parquet) with a dataset card,
optionally pushed to the hub.

Each row: {id, messages: [{role: user, content: instruction}, {role: assistant, content: response}],
score, source: {segment_id, url}}. The card (README.md with YAML metadata) records where the data came
from, how many rows each step kept, the settings and models that made it, and the licence fields.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from humback.errors import HumbackError
from humback.records import atomic_write, read_jsonl, write_jsonl
from humback.rundir import RunDir

FORMATS = ("jsonl", "parquet")


class ExportError(HumbackError):
    """An export that cannot run as asked: nothing curated yet, an unknown format, a folder holding
    files humback did not write."""


def curated_rows(run_dir: Path, iteration: int) -> list[dict]:
    run = RunDir(run_dir)
    selected = run.selected(iteration)
    if not selected.is_file():
        raise ExportError(f"{selected} does not exist: run curation first (humback run) or pick --iteration")
    segments = {s["id"]: s for s in read_jsonl(run.segments)} if run.segments.is_file() else {}
    rows = []
    for r in read_jsonl(selected, required=("id", "instruction", "response")):
        seg = segments.get(r["id"], {})
        rows.append({"id": r["id"],
                     "messages": [{"role": "user", "content": r["instruction"]},
                                  {"role": "assistant", "content": r["response"]}],
                     "score": r.get("score"), "source": {"segment_id": r["id"], "url": seg.get("url")}})
    return rows


def dataset_card(manifest: dict, iteration: int, rows: int, files: list[str], license: str, repo: str | None) -> str:
    cfg = manifest.get("config", {})
    stats = {k: v.get("stats") or {} for k, v in manifest.get("stages", {}).items()}
    cur = stats.get(f"curate:{iteration}", {})
    meta = {
        "license": license,
        "language": [cfg.get("data", {}).get("lang", "en")],
        "task_categories": ["text-generation"],
        "tags": ["instruction-backtranslation", "humback", "synthetic-instructions"],
        "size_categories": ["n<1K" if rows < 1000 else "1K<n<10K" if rows < 10_000 else "10K<n<100K"
                            if rows < 100_000 else "100K<n<1M" if rows < 1_000_000 else "n>1M"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": f} for f in files]}],
    }
    funnel = stats.get("segment", {}).get("funnel", {})
    title = repo or f"humback-{manifest.get('name', 'run')}"
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "",
        f"# {title}", "",
        "Instruction-response pairs made by instruction backtranslation (Li et al. 2023, \"Self-Alignment with",
        "Instruction Backtranslation\") with the humback toolkit: a backward model",
        "wrote an instruction for each human-written web segment, and a judge kept the best pairs.", "",
        "## Sources", "",
        f"- seed data: `{cfg.get('data', {}).get('seed_source')}` ({stats.get('seed', {}).get('rows')} pairs)",
        (f"- unlabelled corpus: `{cfg.get('data', {}).get('corpus')}` ({funnel.get('documents')} documents,"
         f" {stats.get('segment', {}).get('rows')} segments kept)"),
        f"- base model: `{cfg.get('model')}`", "",
        "The responses are text from the corpus: its licence and terms apply to them. Set `license` above to",
        "match (`humback export --license`).", "",
        "## Counts", "",
        f"- candidates (one generated instruction per segment): {stats.get('augment', {}).get('rows')}",
        f"- selected in iteration {iteration}: {cur.get('selected')} (exported: {rows})",
        (f"- curation: method `{cur.get('method')}`, threshold {cur.get('threshold')}, parse failures"
         f" {cur.get('parse_failure_rate')}, mean response chars pool {cur.get('response_chars_pool')} vs selected"
         f" {cur.get('response_chars_selected')}"), "",
        "## Settings", "", "```yaml", yaml.safe_dump({k: cfg.get(k) for k in ("augment", "curate", "generation")},
                                                       sort_keys=False).rstrip(), "```", "",
        "## Format", "",
        "JSON rows: `id`, `messages` (user instruction, assistant response), `score` (the curation score),",
        "`source` (`segment_id`, `url`).", "",
    ]
    return "\n".join(lines)


def export(run_dir: str | Path, out_dir: str | Path, iteration: int | None = None, fmt: str = "jsonl",
           license: str = "other", push_to_hub: str | None = None, private: bool = True) -> dict:
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}' (accepted: {', '.join(FORMATS)})")
    manifest = RunDir(run_dir).read_manifest()
    if iteration is None:
        done = [int(k.split(":")[1]) for k, v in manifest.get("stages", {}).items()
                if k.startswith("curate:") and v.get("status") == "done"]
        if not done:
            raise ExportError(f"{run_dir}: no finished curation to export")
        iteration = max(done)
    rows = curated_rows(run_dir, iteration)
    # Only a new or empty folder, or one an earlier export wrote: everything else in it would be
    # overwritten (or, before, uploaded with it).
    written = {"README.md", "data/train.jsonl", "data/train.parquet", "data"}
    if out_dir.is_dir():
        foreign = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*")
                         if str(p.relative_to(out_dir)) not in written)
        if foreign:
            raise ExportError(f"export folder {out_dir} holds other files ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}): give a new or empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = "data/train.parquet"
        (out_dir / "data").mkdir(exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), out_dir / name)
    else:
        name = "data/train.jsonl"
        write_jsonl(out_dir / name, rows)
    atomic_write(out_dir / "README.md", dataset_card(manifest, iteration, len(rows), [name], license, push_to_hub))
    result = {"rows": len(rows), "iteration": iteration, "files": [str(out_dir / name), str(out_dir / "README.md")]}
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
    info = api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=str(folder), allow_patterns=files,
                             commit_message="humback export")
    return str(getattr(info, "commit_url", repo))

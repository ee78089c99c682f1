"""The command line's arguments: a subcommand each (humback/cli.py runs them), whose flags are derived from
the config's own fields: each sets a config key (`--max-chars` sets segment.max_chars), with the field's
type, choices and description, so the CLI never declares a setting a second time."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from types import UnionType
from typing import Literal, Union, get_args, get_origin

from humback.config import BACKENDS

DEFAULT_CONFIG = "configs/demo.yaml"  # the recipe `run` and `plan` take when none is given
KEY = "config:"  # argparse dests of flags derived from config fields: "config:<dotted key>"


def flag_type(annotation) -> tuple[type | None, tuple | None]:
    """The argparse type and choices of a config field; (None, None) for a list, a mapping and the like."""
    args = (
        [a for a in get_args(annotation) if a is not type(None)]
        if get_origin(annotation) in (Union, UnionType)
        else [annotation]
    )
    if len(args) != 1:
        return None, None
    kind = args[0]
    if get_origin(kind) is Literal:
        choices = get_args(kind)
        return type(choices[0]), choices
    return (kind, None) if kind in (int, float, str, bool) else (None, None)


def section_flags(
    sp, section: str, names: list[str] | None = None, rename: dict[str, str] | None = None
) -> None:
    """A flag per scalar field of config section `section` ('' = the top level), its type, choices and help
    taken from the field: `--max-chars` sets segment.max_chars. Lists and mappings are set with --set."""
    from humback.config import RunConfig

    model = RunConfig
    for part in filter(None, section.split(".")):
        model = model.model_fields[part].annotation
    for name, field in model.model_fields.items():
        if names is not None and name not in names:
            continue
        kind, choices = flag_type(field.annotation)
        if kind is None or (kind is bool and field.default is not False):
            continue
        flag = "--" + (rename or {}).get(name, name).replace("_", "-")
        key = f"{section}.{name}" if section else name
        text = f"{field.description or ''} [{key}]".replace("%", "%%")
        if kind is bool:
            sp.add_argument(flag, dest=KEY + key, action="store_const", const=True, help=text)
        else:
            sp.add_argument(
                flag,
                dest=KEY + key,
                type=kind,
                choices=choices,
                metavar=None if choices else name.upper(),
                help=text,
            )


def role_flags(sp, role: str, flag: str) -> None:
    """`--<flag>` names the role's model; `--<flag>-backend` and `--<flag>-base-url` its engine."""
    _model_flag(sp, f"--{flag}", role, f"the {role}'s model")
    sp.add_argument(
        f"--{flag}-backend",
        dest=f"{KEY}generation.{role}.backend",
        choices=BACKENDS,
        help=f"the {role}'s backend [generation.{role}.backend]",
    )
    sp.add_argument(
        f"--{flag}-base-url",
        dest=f"{KEY}generation.{role}.base_url",
        metavar="URL",
        help=f"the {role}'s OpenAI-compatible server [generation.{role}.base_url]",
    )


def _with_config(sp) -> None:
    sp.add_argument("--config", "-c", help="YAML recipe whose settings apply (default: built-in defaults)")
    sp.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. curate.threshold=4.5"
    )


def _model_flag(sp, flag: str, role: str, text: str) -> None:
    """`flag` names the model of generation role `role`."""
    key = f"generation.{role}.model"
    sp.add_argument(flag, dest=KEY + key, metavar="MODEL", help=f"{text} [{key}]")


def _generating_flags(sp, section: str) -> None:
    """A generating stage's own section, the random seed, its engine and the recipe."""
    section_flags(sp, section)
    section_flags(sp, "", ["random_seed"])
    _backend_flags(sp)
    _with_config(sp)


def _backend_flags(sp) -> None:
    section_flags(sp, "generation", ["backend", "base_url"])


def _add_run(sub) -> None:
    sp = sub.add_parser("run", help="run the whole loop into runs/<name>")
    sp.add_argument("config", nargs="?", help=f"YAML recipe (default: {DEFAULT_CONFIG})")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    sp.add_argument("--run-dir", help="run directory (default: runs/<name>)")
    sp.add_argument(
        "--force",
        metavar="STAGE",
        help="rerun this stage (augment, curate:1 ..., or train: every train stage) and what depends on it",
    )


def _add_plan(sub) -> None:
    sp = sub.add_parser(
        "plan", help="what a recipe will cost before it runs: rows, tokens, disk and time per stage"
    )
    sp.add_argument("config", nargs="?", help=f"YAML recipe (default: {DEFAULT_CONFIG})")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    sp.add_argument("--run-dir", help="the run it plans; plan.json goes there (default: runs/<name>)")
    sp.add_argument("--out", help="write plan.json here instead")
    sp.add_argument(
        "--sample", type=int, default=200, help="seed rows and corpus documents read (default: 200)"
    )
    sp.add_argument(
        "--measure",
        action="store_true",
        help="run every stage here on a few sample rows (stand-ins for the run's models) and extrapolate",
    )
    sp.add_argument("--hardware", metavar="NAME", help="time from published figures: h100x8, a100x8, ...")
    sp.add_argument(
        "--params", type=float, help="the model's parameter count, when it cannot be read (offline hub)"
    )


def _add_status(sub) -> None:
    sp = sub.add_parser("status", help="print a run directory's manifest as a table")
    sp.add_argument("run_dir")


def _add_seed(sub) -> None:
    sp = sub.add_parser(
        "seed", help="oasst (hub, tree export, message table) or generic pairs -> seed pairs JSONL"
    )
    sp.add_argument("--out", required=True)
    section_flags(sp, "seed")
    section_flags(sp, "", ["random_seed"])
    _with_config(sp)


def _add_segment(sub) -> None:
    sp = sub.add_parser("segment", help="corpus (HTML, WARC, JSONL, Parquet, hub id) -> segments")
    sp.add_argument("--out", required=True, help="a .jsonl file, or a folder for sharded output")
    section_flags(sp, "segment")
    section_flags(sp, "", ["random_seed"])
    _with_config(sp)


def _add_train(sub) -> None:
    sp = sub.add_parser("train", help="fine-tune a forward or backward model on pairs JSONL")
    sp.add_argument("--data", action="append", required=True, help="pairs JSONL (repeatable)")
    sp.add_argument("--direction", choices=["forward", "backward"], required=True)
    sp.add_argument("--out", required=True)
    section_flags(sp, "", ["model", "random_seed"])
    section_flags(sp, "train")
    _with_config(sp)


def _add_augment(sub) -> None:
    sp = sub.add_parser("augment", help="segments -> candidates with a backward model")
    _model_flag(sp, "--model", "backward", "backward model M_yx")
    sp.add_argument("--segments", required=True)
    sp.add_argument("--out", required=True)
    _generating_flags(sp, "augment")


def _add_curate(sub) -> None:
    sp = sub.add_parser("curate", help="score candidates with a judge and select")
    _model_flag(sp, "--judge", "judge", "judge model")
    sp.add_argument("--candidates", required=True)
    sp.add_argument("--out-dir", required=True)
    sp.add_argument("--iteration", type=int, default=1)
    _generating_flags(sp, "curate")


def _add_rewrite(sub) -> None:
    sp = sub.add_parser("rewrite", help="rewrite selected responses for their instructions (Back-and-Forth)")
    _model_flag(sp, "--rewriter", "rewriter", "the rewriting model (default: the config's model)")
    sp.add_argument(
        "--selected", required=True, help="selected pairs JSONL (a curate stage's selected.jsonl)"
    )
    sp.add_argument("--out-dir", required=True, help="where rewrites.jsonl and rewritten.jsonl go")
    section_flags(
        sp,
        "rewrite",
        [
            n
            for n in (
                "temperature",
                "top_p",
                "max_new_tokens",
                "on_parse_failure",
                "min_overlap",
                "min_length_ratio",
                "max_length_ratio",
            )
        ],
    )
    section_flags(sp, "", ["model", "random_seed"])
    _backend_flags(sp)
    _with_config(sp)


def _add_calibrate(sub) -> None:
    sp = sub.add_parser(
        "calibrate", help="how well a judge separates good from bad: AUC, precision, recall, F1"
    )
    sp.add_argument(
        "data",
        help="JSONL of (instruction, response, label), or of good pairs only: then a mismatched,"
        " a truncated and a boilerplate-spliced negative is built from each",
    )
    _model_flag(sp, "--judge", "judge", "judge model (default: the config's model)")
    sp.add_argument(
        "--response-field", default="response", help="column holding the response, e.g. output_gpt4"
    )
    sp.add_argument("--limit", type=int, help="use the first N rows")
    sp.add_argument(
        "--fit",
        metavar="SIGNALS",
        help="fit curate.combine weights over these signals, e.g. ifd,end_logprob,judge_score",
    )
    sp.add_argument("--out-dir", default="calibration", help="where scored.jsonl and calibration.json go")
    section_flags(sp, "", ["random_seed"])
    _backend_flags(sp)
    _with_config(sp)


def _add_eval(sub) -> None:
    sp = sub.add_parser(
        "eval",
        help="evaluate a run on held-out pairs: backward NLL/ROUGE-L, judge AUC, forward"
        " NLL and win rates; writes eval/metrics.json and the report",
    )
    sp.add_argument("run_dir")
    section_flags(sp, "eval")
    role_flags(sp, "referee", "referee")
    _with_config(sp)


def _add_report(sub) -> None:
    sp = sub.add_parser("report", help="write <run>/report/report.md with plots")
    sp.add_argument("run_dir")


def _add_export(sub) -> None:
    sp = sub.add_parser(
        "export", help="the curated dataset as chat-messages JSONL/Parquet with a dataset card"
    )
    sp.add_argument("run_dir")
    sp.add_argument("--out", required=True, help="output folder (data/ + README.md card)")
    sp.add_argument("--iteration", type=int, help="which iteration's selection (default: the last finished)")
    sp.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    sp.add_argument(
        "--license", default="other", help="licence of the data (that of your corpus), for the card"
    )
    sp.add_argument(
        "--push-to-hub", metavar="REPO", help="also upload to this dataset repo (token from HF_TOKEN)"
    )
    sp.add_argument("--public", action="store_true", help="make a new hub repo public (default: private)")


def _add_view(sub) -> None:
    sp = sub.add_parser(
        "view", help="browse a run in the browser: funnel, candidates, scores, iteration diff, eval"
    )
    sp.add_argument("run_dir")
    sp.add_argument("--port", type=int, default=8765)
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")


def parser(commands: Mapping[str, Callable]) -> argparse.ArgumentParser:
    """`humback`'s arguments: a subcommand each, its flags derived from its config section, and `func` the
    function of `commands` that runs it (a subcommand without one, or one without arguments, fails here,
    whichever subcommand is asked for)."""
    p = argparse.ArgumentParser(prog="humback", description="Instruction backtranslation, end to end.")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (
        _add_run,
        _add_plan,
        _add_status,
        _add_seed,
        _add_segment,
        _add_train,
        _add_augment,
        _add_curate,
        _add_rewrite,
        _add_calibrate,
        _add_eval,
        _add_report,
        _add_export,
        _add_view,
    ):
        add(sub)
    if set(sub.choices) != set(commands):
        raise RuntimeError(f"subcommands {sorted(sub.choices)} != commands {sorted(commands)}")
    for name, sp in sub.choices.items():
        sp.set_defaults(func=commands[name])
    return p

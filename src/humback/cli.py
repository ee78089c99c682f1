"""`humback` command line: the only place that prints errors and chooses exit codes.

Exit codes, decided by the error's class (humback/errors.py): 0 success, 2 a user error (bad config,
missing file, unknown model, bad data, a refused path), 3 an environment fault (a server went away,
another process holds the run folder; work done so far is kept, rerun to resume), 1 anything unexpected
(with its traceback, since that is a bug to report).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from humback.budget import BudgetStop
from humback.config import ConfigError, load_config
from humback.errors import EnvironmentFault, HumbackError
from humback.flags import KEY, role_flags, section_flags
from humback.rundir import RunDir, writer_lock

DEFAULT_CONFIG = "configs/demo.yaml"


def _config(args, default: str | None = None):
    """The recipe given, else `default` when it exists (only `run` has one), else built-in defaults;
    then --set overrides, then the subcommand's flags (each names its config key, see _flags), all
    validated together."""
    path = args.config
    if path is None and default and Path(default).is_file():
        path = default
    sets = list(args.set or [])
    sets += [
        f"{dest[len(KEY) :]}={json.dumps(value)}"
        for dest, value in vars(args).items()
        if dest.startswith(KEY) and value is not None
    ]
    return load_config(path, sets)


def cmd_run(args) -> None:
    import yaml

    from humback.pipeline import run_pipeline

    cfg = _config(args, DEFAULT_CONFIG)
    print("[humback] resolved config:\n" + yaml.safe_dump(cfg.model_dump(), sort_keys=False), flush=True)
    run_pipeline(cfg, args.run_dir or Path("runs") / cfg.name, force=args.force)


def cmd_plan(args) -> None:
    from humback.files import atomic_write, ensure_dir
    from humback.plan import plan
    from humback.status import plan_table, read_plan

    cfg = _config(args, DEFAULT_CONFIG)
    out = Path(args.out) if args.out else RunDir(args.run_dir or Path("runs") / cfg.name).plan_path
    if out.exists() and read_plan(out) is None:
        raise HumbackError(f"{out} exists and is not a plan humback wrote: give another --out")
    got = plan(cfg, rows=args.sample, measure=args.measure, hardware=args.hardware, params=args.params)
    with writer_lock(out):
        ensure_dir(out.parent)
        atomic_write(out, json.dumps(got, indent=1))
    print(plan_table(got))
    print(f"[humback] plan: {out} (humback status shows it beside what ran)")


def cmd_status(args) -> None:
    from humback.status import status_table

    print(status_table(args.run_dir))


def cmd_seed(args) -> None:
    from humback.data.seed import seed_pairs

    cfg = _config(args)
    with writer_lock(args.out):
        print(seed_pairs(cfg.seed.source, args.out, cfg.seed, seed=cfg.random_seed))


def cmd_segment(args) -> None:
    from humback.data.segment import segment
    from humback.runners import file_map

    cfg = _config(args)
    with writer_lock(args.out):
        print(
            segment(
                cfg.segment.corpus,
                args.out,
                cfg.segment,
                seed=cfg.random_seed,
                map_files=file_map(cfg.cluster),
            )
        )


def cmd_train(args) -> None:
    from humback.training.sft import train

    cfg = _config(args)
    with writer_lock(args.out):
        print(
            train(args.data, cfg.model, args.out, cfg.train, direction=args.direction, seed=cfg.random_seed)
        )


def _runner(cfg, role: str, out: Path, model: str | None = None):
    """The role's generator (its own model, else `model`) in this process, behind the response cache kept
    beside the output (when enabled), or its replicas on Ray (cluster.engine: ray)."""
    from humback.runners import runner_for

    return runner_for(
        cfg.generation.role(role), model, RunDir(out).cache_file(cfg.generation.cache), cfg.cluster
    )


def cmd_augment(args) -> None:
    from humback.augment import augment, read_segments

    cfg = _config(args)
    read_segments(args.segments)  # bad input is reported before the model loads
    with writer_lock(args.out):
        runner = _runner(cfg, "backward", Path(args.out).parent)
        print(augment(args.segments, runner, args.out, cfg.augment, seed=cfg.random_seed))


def cmd_curate(args) -> None:
    from humback.curate import curate, read_candidates

    cfg = _config(args)
    read_candidates(args.candidates)  # bad input is reported before the model loads
    with writer_lock(args.out_dir):
        runner = _runner(cfg, "judge", Path(args.out_dir))
        print(
            curate(
                args.candidates,
                runner,
                args.out_dir,
                cfg.curate,
                iteration=args.iteration,
                seed=cfg.random_seed,
            )
        )


def cmd_rewrite(args) -> None:
    from humback.rewrite import check_rewriter, read_selected, rewrite

    cfg = _config(args)
    read_selected(args.selected)  # bad input is reported before the model loads
    check_rewriter(cfg.generation.role("rewriter"), cfg.model)
    with writer_lock(args.out_dir):
        runner = _runner(cfg, "rewriter", Path(args.out_dir), cfg.model)  # the base model unless it names one
        print(rewrite(args.selected, runner, args.out_dir, cfg.rewrite, seed=cfg.random_seed))


def cmd_calibrate(args) -> None:
    from humback.calibrate import calibrate, calibration_table, read_pairs
    from humback.generation import open_generator

    cfg = _config(args)
    out = Path(args.out_dir)
    fit = [s.strip() for s in args.fit.split(",")] if args.fit else None
    pairs = read_pairs(
        args.data, args.response_field, args.limit
    )  # bad input is reported before the model loads
    with writer_lock(out):
        # The judge named by --judge or the config's generation.judge.model, else the config's model.
        gen = open_generator(
            cfg.generation.role("judge"), cfg.model, RunDir(out).cache_file(cfg.generation.cache)
        )
        result = calibrate(pairs, gen, out, cfg.curate, fit=fit, seed=cfg.random_seed, source=args.data)
    print(calibration_table(result))
    print(f"[humback] scored rows: {out / 'scored.jsonl'}; metrics: {out / 'calibration.json'}")


def _run_config(args):
    """The config a run was made with (its saved config.yaml), then --set and the subcommand's flags."""
    saved = Path(args.run_dir) / "config.yaml"
    if args.config is None and not saved.is_file():
        raise ConfigError(
            f"{args.run_dir} has no config.yaml: is it a humback run directory? (or pass --config)"
        )
    args.config = args.config or str(saved)
    return args


def cmd_eval(args) -> None:
    from humback.evaluate import evaluate
    from humback.report import report

    cfg = _config(_run_config(args))
    with writer_lock(RunDir(args.run_dir).eval_dir, what=args.run_dir):
        metrics = evaluate(args.run_dir, cfg)
        print(json.dumps({k: metrics[k] for k in ("backward", "forward", "win_rates")}, indent=1))
        print(
            f"[humback] metrics: {Path(args.run_dir) / 'eval' / 'metrics.json'}; report: "
            f"{report(args.run_dir)}"
        )


def cmd_report(args) -> None:
    from humback.report import report

    with writer_lock(RunDir(args.run_dir).report_dir, what=args.run_dir):
        print(f"[humback] report: {report(args.run_dir)}")


def cmd_export(args) -> None:
    from humback.export import export

    with writer_lock(args.out):
        print(
            json.dumps(
                export(
                    args.run_dir,
                    args.out,
                    args.iteration,
                    args.format,
                    args.license,
                    args.push_to_hub,
                    private=not args.public,
                ),
                indent=1,
            )
        )


def cmd_view(args) -> None:
    try:
        from humback.viewer.server import serve
    except ImportError as e:
        raise ConfigError(
            f"humback view needs its extra ({e.name} is missing): pip install 'humback[view]'"
        ) from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"[humback] warning: serving on {args.host}: anyone who reaches this address can read the run",
            file=sys.stderr,
        )
    serve(args.run_dir, args.host, args.port)


def _with_config(sp) -> None:
    sp.add_argument("--config", "-c", help="YAML recipe whose settings apply (default: built-in defaults)")
    sp.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. curate.threshold=4.5"
    )


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
    sp.set_defaults(func=cmd_run)


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
    sp.set_defaults(func=cmd_plan)


def _add_status(sub) -> None:
    sp = sub.add_parser("status", help="print a run directory's manifest as a table")
    sp.add_argument("run_dir")
    sp.set_defaults(func=cmd_status)


def _add_seed(sub) -> None:
    sp = sub.add_parser(
        "seed", help="oasst (hub, tree export, message table) or generic pairs -> seed pairs JSONL"
    )
    sp.add_argument("--out", required=True)
    section_flags(sp, "seed")
    section_flags(sp, "", ["random_seed"])
    _with_config(sp)
    sp.set_defaults(func=cmd_seed)


def _add_segment(sub) -> None:
    sp = sub.add_parser("segment", help="corpus (HTML, WARC, JSONL, Parquet, hub id) -> segments")
    sp.add_argument("--out", required=True, help="a .jsonl file, or a folder for sharded output")
    section_flags(sp, "segment")
    section_flags(sp, "", ["random_seed"])
    _with_config(sp)
    sp.set_defaults(func=cmd_segment)


def _add_train(sub) -> None:
    sp = sub.add_parser("train", help="fine-tune a forward or backward model on pairs JSONL")
    sp.add_argument("--data", action="append", required=True, help="pairs JSONL (repeatable)")
    sp.add_argument("--direction", choices=["forward", "backward"], required=True)
    sp.add_argument("--out", required=True)
    section_flags(sp, "", ["model", "random_seed"])
    section_flags(sp, "train")
    _with_config(sp)
    sp.set_defaults(func=cmd_train)


def _add_augment(sub) -> None:
    sp = sub.add_parser("augment", help="segments -> candidates with a backward model")
    sp.add_argument(
        "--model",
        dest=f"{KEY}generation.backward.model",
        metavar="MODEL",
        help="backward model M_yx [generation.backward.model]",
    )
    sp.add_argument("--segments", required=True)
    sp.add_argument("--out", required=True)
    section_flags(sp, "augment")
    section_flags(sp, "", ["random_seed"])
    _backend_flags(sp)
    _with_config(sp)
    sp.set_defaults(func=cmd_augment)


def _add_curate(sub) -> None:
    sp = sub.add_parser("curate", help="score candidates with a judge and select")
    sp.add_argument(
        "--judge",
        dest=f"{KEY}generation.judge.model",
        metavar="MODEL",
        help="judge model [generation.judge.model]",
    )
    sp.add_argument("--candidates", required=True)
    sp.add_argument("--out-dir", required=True)
    sp.add_argument("--iteration", type=int, default=1)
    section_flags(sp, "curate")
    section_flags(sp, "", ["random_seed"])
    _backend_flags(sp)
    _with_config(sp)
    sp.set_defaults(func=cmd_curate)


def _add_rewrite(sub) -> None:
    sp = sub.add_parser("rewrite", help="rewrite selected responses for their instructions (Back-and-Forth)")
    sp.add_argument(
        "--rewriter",
        dest=f"{KEY}generation.rewriter.model",
        metavar="MODEL",
        help="the rewriting model (default: the config's model) [generation.rewriter.model]",
    )
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
    sp.set_defaults(func=cmd_rewrite)


def _add_calibrate(sub) -> None:
    sp = sub.add_parser(
        "calibrate", help="how well a judge separates good from bad: AUC, precision, recall, F1"
    )
    sp.add_argument(
        "data",
        help="JSONL of (instruction, response, label), or of good pairs only: then a mismatched,"
        " a truncated and a boilerplate-spliced negative is built from each",
    )
    sp.add_argument(
        "--judge",
        dest=f"{KEY}generation.judge.model",
        metavar="MODEL",
        help="judge model (default: the config's model) [generation.judge.model]",
    )
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
    sp.set_defaults(func=cmd_calibrate)


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
    sp.set_defaults(func=cmd_eval)


def _add_report(sub) -> None:
    sp = sub.add_parser("report", help="write <run>/report/report.md with plots")
    sp.add_argument("run_dir")
    sp.set_defaults(func=cmd_report)


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
    sp.set_defaults(func=cmd_export)


def _add_view(sub) -> None:
    sp = sub.add_parser(
        "view", help="browse a run in the browser: funnel, candidates, scores, iteration diff, eval"
    )
    sp.add_argument("run_dir")
    sp.add_argument("--port", type=int, default=8765)
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    sp.set_defaults(func=cmd_view)


def _parser() -> argparse.ArgumentParser:
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args.func(args)
    except EnvironmentFault as e:
        print(
            f"humback: {e}\nWork finished so far is kept: rerun the same command to resume.", file=sys.stderr
        )
        return e.exit_code
    except HumbackError as e:  # a budget's stop is not an error: it says how to continue
        print(f"humback: {'' if isinstance(e, BudgetStop) else 'error: '}{e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A write that did not pass through humback's writers (a library's save): still one line, exit 3.
        print(
            f"humback: no space left on the device{f' writing {e.filename}' if e.filename else ''}: free some"
            " space and rerun the same command (finished work is kept)",
            file=sys.stderr,
        )
        return 3
    except KeyboardInterrupt:
        print("humback: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

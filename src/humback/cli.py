"""`humback` command line: the only place that prints errors and chooses exit codes.

Exit codes, decided by the error's class (humback/errors.py): 0 success, 2 a user error (bad config,
missing file, unknown model, bad data, a refused path), 3 an environment fault (a server went away,
another process holds the run folder; work done so far is kept, rerun to resume), 1 anything unexpected
(with its traceback, since that is a bug to report).
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

from humback.budget import BudgetStop
from humback.config import ConfigError, load_config
from humback.errors import EnvironmentFault, HumbackError
from humback.flags import DEFAULT_CONFIG, KEY, parser
from humback.rundir import RunDir, writer_lock


def _config(args, default: str | None = None):
    """The recipe given, else `default` when it exists (only `run` has one), else built-in defaults;
    then --set overrides, then the subcommand's flags (each names its config key: humback/flags.py), all
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


COMMANDS = {  # each subcommand's function (its arguments: humback/flags.py)
    "run": cmd_run,
    "plan": cmd_plan,
    "status": cmd_status,
    "seed": cmd_seed,
    "segment": cmd_segment,
    "train": cmd_train,
    "augment": cmd_augment,
    "curate": cmd_curate,
    "rewrite": cmd_rewrite,
    "calibrate": cmd_calibrate,
    "eval": cmd_eval,
    "report": cmd_report,
    "export": cmd_export,
    "view": cmd_view,
}


def main(argv: list[str] | None = None) -> int:
    args = parser(COMMANDS).parse_args(argv)
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

"""`humback` command line: the only place that prints errors and chooses exit codes.

Exit codes: 0 success, 2 a user error (bad config, missing file, unknown model, bad data), 1 anything
unexpected (with its traceback, since that is a bug to report).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from humback.config import ConfigError, load_config

DEFAULT_CONFIG = "configs/demo.yaml"


def _user_errors() -> tuple[type[Exception], ...]:
    from humback.models import ModelError
    from humback.pipeline import StageError
    from humback.records import RecordError
    from humback.training.examples import TrainingDataError

    return ConfigError, ModelError, RecordError, StageError, TrainingDataError


def _config(args):
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    return load_config(path, args.set or [])


def cmd_run(args) -> None:
    import yaml

    from humback.pipeline import run_pipeline

    cfg = _config(args)
    print("[humback] resolved config:\n" + yaml.safe_dump(cfg.model_dump(), sort_keys=False), flush=True)
    run_pipeline(cfg, args.run_dir or Path("runs") / cfg.name, force=args.force)


def cmd_status(args) -> None:
    from humback.pipeline import status_table

    print(status_table(args.run_dir))


def cmd_seed(args) -> None:
    from humback.data.seed import seed

    print(seed(args.source, args.out, args.lang, args.max_seed, args.seed))


def cmd_segment(args) -> None:
    from humback.data.segment import segment

    print(segment(args.corpus, args.out, args.min_chars, args.max_chars, args.max_segments, args.seed))


def cmd_train(args) -> None:
    from humback.records import read_jsonl
    from humback.training.sft import train

    cfg = _config(args)
    pairs = [row for f in args.data for row in read_jsonl(f, required=("instruction", "response"))]
    print(train(pairs, args.model or cfg.model, args.out, args.direction, cfg.train, seed=cfg.seed))


def cmd_augment(args) -> None:
    from humback.augment import augment
    from humback.generation.base import load_generator

    cfg = _config(args)
    g = cfg.generation
    gen = load_generator(args.model, g.backend, g.device, g.batch_size)
    print(augment(args.segments, gen, args.out, cfg.augment, cfg.seed, g.batch_size))


def cmd_curate(args) -> None:
    from humback.curate import curate
    from humback.generation.base import load_generator

    cfg = _config(args)
    g = cfg.generation
    gen = load_generator(args.judge, g.backend, g.device, g.batch_size)
    print(curate(args.candidates, gen, args.out_dir, cfg.curate, args.iteration, cfg.seed, g.batch_size))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="humback", description="Instruction backtranslation, end to end.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp):
        sp.add_argument("--config", "-c", help=f"YAML recipe (default: {DEFAULT_CONFIG} if present, else built-in defaults)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. curate.threshold=4.5")

    sp = sub.add_parser("run", help="run the whole loop into runs/<name>")
    sp.add_argument("config", nargs="?", help="YAML recipe (default: configs/demo.yaml)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    sp.add_argument("--run-dir", help="run directory (default: runs/<name>)")
    sp.add_argument("--force", metavar="STAGE", help="rerun this stage (e.g. curate:1 or train) and all after it")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("status", help="print a run directory's manifest as a table")
    sp.add_argument("run_dir")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("seed", help="oasst tree export -> seed pairs JSONL")
    sp.add_argument("--source", default="demo")
    sp.add_argument("--out", required=True)
    sp.add_argument("--lang", default="en")
    sp.add_argument("--max-seed", type=int, default=3200)
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_seed)

    sp = sub.add_parser("segment", help="HTML folder or JSONL corpus -> segments JSONL")
    sp.add_argument("--corpus", default="demo")
    sp.add_argument("--out", required=True)
    sp.add_argument("--min-chars", type=int, default=600)
    sp.add_argument("--max-chars", type=int, default=3000)
    sp.add_argument("--max-segments", type=int)
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_segment)

    sp = sub.add_parser("train", help="fine-tune a forward or backward model on pairs JSONL")
    sp.add_argument("--data", action="append", required=True, help="pairs JSONL (repeatable)")
    sp.add_argument("--direction", choices=["forward", "backward"], required=True)
    sp.add_argument("--model", help="base model (default: the config's model)")
    sp.add_argument("--out", required=True)
    with_config(sp)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("augment", help="segments -> candidates with a backward model")
    sp.add_argument("--model", required=True, help="backward model M_yx")
    sp.add_argument("--segments", required=True)
    sp.add_argument("--out", required=True)
    with_config(sp)
    sp.set_defaults(func=cmd_augment)

    sp = sub.add_parser("curate", help="score candidates with a judge and select")
    sp.add_argument("--judge", required=True)
    sp.add_argument("--candidates", required=True)
    sp.add_argument("--out-dir", required=True)
    sp.add_argument("--iteration", type=int, default=1)
    with_config(sp)
    sp.set_defaults(func=cmd_curate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args.func(args)
    except _user_errors() as e:
        print(f"humback: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("humback: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

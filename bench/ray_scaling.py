"""The augmentation stage on the local engine vs on Ray with 1 and 2 CPU replicas, same cores, one run.

Workload: `augment` over N demo segments (default 24 and 72, cycled from the bundled demo corpus) with the
default model on CTranslate2 int8, the paper's backward prompt and augment's sampling, ≤ 64 new tokens.
For each workload size, each round runs every setting in turn, the order rotating per round, each on a
fresh output file:
- local, 2 threads: the local engine as a user runs it on this machine (all cores, one model);
- local, 1 thread: one core's worth, the reference for Ray's overhead;
- ray x1 (1 CPU, 1 thread) and ray x2 (2 replicas of 1 CPU and 1 thread each), shards of `--shard-rows`.
Ray runs include creating the replicas (a fresh actor pool per stage, as in a real run, and the model
loaded in each); one local Ray instance is started once, before the rounds. Reported per setting and
size: segments/s (median of rounds); the scaling ratio ray x2 / local (2 threads) at the largest size,
the goal being >= 0.95. With two or more sizes, each setting's seconds are fitted as fixed cost per stage
+ cost per segment: the marginal ratio (what a long run approaches), Ray's fixed cost per stage (creating
replicas, loading the model in each) and its overhead per shard, against the local engine on one thread.

    .venv/bin/python bench/ray_scaling.py                      # writes bench/results/ray_scaling.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from record import write_record
from workloads import demo_segments

from humback.augment import augment
from humback.config import AugmentConfig, ClusterConfig, EngineConfig
from humback.generation import load_generator
from humback.ray_runner import RayRunner
from humback.records import write_jsonl
from humback.rowloop import LocalRunner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--segments",
        type=int,
        nargs="+",
        default=[24, 72],
        help="workload sizes; two or more give the fixed cost per stage and the marginal rate",
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--shard-rows", type=int, default=4)
    ap.add_argument("--out", default="bench/results/ray_scaling.json")
    args = ap.parse_args()

    import ray

    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    # One worker: "local, N threads" is one model on N threads, as in the recorded runs.
    engine = EngineConfig(backend="ctranslate2", compute_type="int8", batch_size=8, device="cpu", workers=1)
    cfg = AugmentConfig(max_new_tokens=args.max_new_tokens)
    tmp = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    local = load_generator(engine, "default")  # loaded once, outside the timing, as a local run holds it

    def run_local(segments: Path, threads: int) -> float:
        torch.set_num_threads(threads)
        local.threads = threads
        local.lms = [local._load()]  # CTranslate2 takes its thread count when the model is loaded
        start = time.perf_counter()
        augment(segments, LocalRunner(local), tmp / f"local-{time.monotonic_ns()}.jsonl", cfg)
        return time.perf_counter() - start

    def run_ray(segments: Path, replicas: int) -> float:
        cluster = ClusterConfig(
            engine="ray", replicas=replicas, cpus_per_replica=1, shard_rows=args.shard_rows
        )
        start = time.perf_counter()
        augment(
            segments, RayRunner(engine, "default", cluster), tmp / f"ray-{time.monotonic_ns()}.jsonl", cfg
        )
        return time.perf_counter() - start

    settings = {
        "local, 2 threads": lambda f: run_local(f, 2),
        "local, 1 thread": lambda f: run_local(f, 1),
        "ray x1": lambda f: run_ray(f, 1),
        "ray x2": lambda f: run_ray(f, 2),
    }
    names = list(settings)
    seconds: dict[int, dict[str, list[float]]] = {}
    for n in args.segments:
        segments = tmp / f"segments-{n}.jsonl"
        write_jsonl(segments, demo_segments(n))
        seconds[n] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate who goes first
                seconds[n][name].append(settings[name](segments))
                print(f"{n} segments, round {r + 1}: {name} {seconds[n][name][-1]:.1f} s", flush=True)
    median = {n: {name: statistics.median(s) for name, s in per.items()} for n, per in seconds.items()}
    rate = {n: {name: round(n / t, 4) for name, t in per.items()} for n, per in median.items()}
    largest = max(args.segments)
    extra: dict = {}
    if len(args.segments) >= 2:
        # Seconds = fixed cost per stage + per-segment cost x segments, by least squares over the sizes:
        # the fixed part is what a larger run amortises, the per-segment part what it pays per row.
        fit = {}
        for name in names:
            xs = [n for n in args.segments]
            ys = [median[n][name] for n in xs]
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
            fit[name] = {"fixed_s": round(my - slope * mx, 1), "s_per_segment": round(slope, 3)}
        extra = {
            "fit": fit,
            "marginal_ratio_ray_x2_vs_local": round(
                fit["local, 2 threads"]["s_per_segment"] / fit["ray x2"]["s_per_segment"], 3
            ),
            "ray_overhead_per_shard_s": round(
                (fit["ray x1"]["s_per_segment"] - fit["local, 1 thread"]["s_per_segment"]) * args.shard_rows,
                2,
            ),
            "ray_fixed_cost_per_stage_s": round(
                fit["ray x1"]["fixed_s"] - fit["local, 1 thread"]["fixed_s"], 1
            ),
        }
    write_record(
        args.out,
        "ray_scaling",
        "segments/s",
        rate[largest]["local, 2 threads"],
        rate[largest]["ray x2"],
        round(rate[largest]["ray x2"] / rate[largest]["local, 2 threads"], 3),
        segments=args.segments,
        rounds=args.rounds,
        shard_rows=args.shard_rows,
        max_new_tokens=args.max_new_tokens,
        segments_per_s=rate,
        seconds={
            n: {name: [round(x, 1) for x in s] for name, s in per.items()} for n, per in seconds.items()
        },
        replica_scaling=round(rate[largest]["ray x2"] / rate[largest]["ray x1"], 3),
        **extra,
    )
    ray.shutdown()


if __name__ == "__main__":
    main()

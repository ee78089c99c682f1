"""The augmentation stage on the local engine vs on Ray with 1 and 2 CPU replicas, same cores, one run.

Workload: `augment` over N demo segments (default 24, cycled from the bundled demo corpus) with the
default model on CTranslate2 int8, the paper's backward prompt and augment's sampling, ≤ 64 new tokens.
Each round runs every setting in turn, the order rotating per round, each on a fresh output file:
- local, 2 threads: the local engine as a user runs it on this machine (all cores, one model);
- local, 1 thread: one core's worth, the reference for Ray's overhead;
- ray x1 (1 CPU, 1 thread) and ray x2 (2 replicas of 1 CPU and 1 thread each), shards of `--shard-rows`.
Ray runs include creating the replicas (a fresh actor pool per stage, as in a real run, and the model
loaded in each); one local Ray instance is started once, before the rounds. Reported per setting:
segments/s (median of rounds); the scaling ratio ray x2 / local (2 threads), the goal being >= 0.95; and
Ray's overhead: (ray x1 - local 1 thread) seconds, per shard.

    .venv/bin/python bench/ray_scaling.py                      # writes bench/results/ray_scaling.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from generate_backends import demo_segments
from record import write_record

from humback.augment import augment
from humback.cluster import Replicas
from humback.config import AugmentConfig, ClusterConfig, EngineConfig
from humback.generation import load_generator
from humback.records import write_jsonl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--shard-rows", type=int, default=4)
    ap.add_argument("--out", default="bench/results/ray_scaling.json")
    args = ap.parse_args()

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    engine = EngineConfig(backend="ctranslate2", compute_type="int8", batch_size=8, device="cpu")
    cfg = AugmentConfig(max_new_tokens=args.max_new_tokens)
    tmp = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    segments = tmp / "segments.jsonl"
    write_jsonl(segments, demo_segments(args.segments))
    local = load_generator(engine, "default")  # loaded once, outside the timing, as a local run holds it

    def run_local(threads: int) -> float:
        torch.set_num_threads(threads)
        local.lm = local._load()  # CTranslate2 takes its thread count when the model is loaded
        out = tmp / f"local-{threads}-{time.monotonic_ns()}.jsonl"
        start = time.perf_counter()
        augment(segments, local, out, cfg)
        return time.perf_counter() - start

    def run_ray(replicas: int) -> float:
        cluster = ClusterConfig(engine="ray", replicas=replicas, cpus_per_replica=1, shard_rows=args.shard_rows)
        out = tmp / f"ray-{replicas}-{time.monotonic_ns()}.jsonl"
        start = time.perf_counter()
        augment(segments, Replicas(engine, "default", cluster, load_generator), out, cfg)
        return time.perf_counter() - start

    settings = {"local, 2 threads": lambda: run_local(2), "local, 1 thread": lambda: run_local(1),
                "ray x1": lambda: run_ray(1), "ray x2": lambda: run_ray(2)}
    names = list(settings)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            seconds[name].append(settings[name]())
            print(f"round {r + 1}: {name} {seconds[name][-1]:.1f} s", flush=True)
    median = {n: statistics.median(s) for n, s in seconds.items()}
    rate = {n: round(args.segments / median[n], 4) for n in names}
    shards = -(-args.segments // args.shard_rows)
    overhead = median["ray x1"] - median["local, 1 thread"]
    write_record(args.out, "ray_scaling", "segments/s", rate["local, 2 threads"], rate["ray x2"],
                 round(rate["ray x2"] / rate["local, 2 threads"], 3),
                 segments=args.segments, rounds=args.rounds, shard_rows=args.shard_rows,
                 max_new_tokens=args.max_new_tokens, segments_per_s=rate,
                 seconds={n: [round(x, 1) for x in s] for n, s in seconds.items()},
                 ray_overhead_s=round(overhead, 1), ray_overhead_per_shard_s=round(overhead / shards, 2),
                 replica_scaling=round(rate["ray x2"] / rate["ray x1"], 3))
    ray.shutdown()


if __name__ == "__main__":
    main()

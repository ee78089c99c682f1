"""Training on a Ray cluster through Ray Train (`cluster.train_workers` > 0): data-parallel, as under
`accelerate launch`."""

from __future__ import annotations

import json
from pathlib import Path

from humback.cluster import connect, reraise
from humback.config import ClusterConfig
from humback.files import make_owned_dir, remove_owned


def train_on_ray(train, out: Path, cluster: ClusterConfig) -> dict:
    """Run `train` (training.sft.train bound to its arguments) in cluster.train_workers Ray Train workers:
    TorchTrainer sets up the process group (gloo on CPUs, NCCL on GPUs) and accelerate and the Trainer
    take it from there, data-parallel as under `accelerate launch`. The main worker saves the model to
    `out`, which every worker and this driver must reach (shared storage across nodes); returns the stats
    it saved beside the model. A killed run resumes from its last checkpoint, as a local one does."""
    connect(cluster)
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    gpus = cluster.train_gpus_per_worker
    records = make_owned_dir(out.with_name(out.name + ".ray"))  # Ray Train's run records, removed after
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"train": train, "threads": max(1, int(cluster.train_cpus_per_worker))},
        scaling_config=ScalingConfig(
            num_workers=cluster.train_workers,
            use_gpu=gpus > 0,
            resources_per_worker={"CPU": cluster.train_cpus_per_worker, **({"GPU": gpus} if gpus else {})},
        ),
        run_config=RunConfig(
            name=out.name, storage_path=str(records.resolve()), failure_config=FailureConfig(max_failures=0)
        ),
    )
    try:
        trainer.fit()
    except Exception as e:  # noqa: BLE001 (Ray Train wraps a worker's error; reraise sorts them)
        reraise(e, "rerun the same command: training resumes from its last checkpoint")
    remove_owned(records)
    return json.loads((out / "humback_train.json").read_text(encoding="utf-8"))["stats"]


def _train_loop(config: dict) -> None:
    import torch

    torch.set_num_threads(config["threads"])
    config["train"]()

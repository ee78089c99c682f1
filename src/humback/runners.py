"""Where a stage's rows run, chosen once by the pipeline or the CLI from the config: in this process
(rowloop.LocalRunner) or on a Ray cluster (ray_runner.RayRunner; segment's files through
ray_runner.ordered_map). Ray is imported only when `cluster.engine` is 'ray'.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from humback.config import ClusterConfig, EngineConfig
from humback.generation import open_generator
from humback.models import ModelError
from humback.rowloop import LocalRunner, Runner

if TYPE_CHECKING:
    from humback.budget import Allowance


def runner_for(
    engine: EngineConfig,
    model: str | None,
    cache_file: Path | None,
    cluster: ClusterConfig | None = None,
    allowance: Allowance | None = None,
) -> Runner:
    """The runner a generating stage gets: this process's generator for the role behind the response cache
    in `cache_file` (None: no cache), or, with cluster.engine 'ray', replicas of it on the Ray cluster.
    With an `allowance` (humback/budget.py) the stage spends within it, at the role's prices."""
    if allowance is not None:
        allowance.prices = engine
    if cluster is None or cluster.engine == "local":
        return LocalRunner(open_generator(engine, model, cache_file), allowance)
    from humback.ray_runner import RayRunner

    name = engine.model or model
    if not name:
        raise ModelError(
            "no model given for generation: pass --model/--judge or set the role's `model` in the config"
        )
    return RayRunner(engine, name, cluster, allowance)


def file_map(cluster: ClusterConfig | None):
    """How segment maps over a local corpus's files: None (in this process, as it streams), or Ray tasks
    in file order with cluster.engine 'ray'."""
    if cluster is None or cluster.engine == "local":
        return None
    from humback.ray_runner import ordered_map

    return partial(ordered_map, cluster=cluster)

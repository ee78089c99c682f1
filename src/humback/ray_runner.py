"""The row loop on a Ray cluster (`cluster.engine: ray`), and segment's ordered file map there.

The rows of augment or curate stream through Ray Data's `map_batches` into a pool of replicas, each a
Ray actor holding one generator (any backend: vLLM on GPU nodes, OpenVINO, CTranslate2 or transformers on
CPU nodes) for the whole stage. Work is cut into shards: fixed blocks of `cluster.shard_rows` input rows in
input order, one shard per Ray Data batch. The driver saves each finished shard at once, atomically, in
`<out>.shards/`; a killed driver followed by the same command computes only the shards that are missing,
and a replica whose worker dies has its shard retried by Ray (the driver writes each shard once, so no
row is repeated). The finished shards stay after the stage: they play the response cache's role on the
cluster, so a rerun that only changes selection settings costs no generation.

Each row keeps its own seed (row_seed), so backends that seed each request (vLLM, OpenVINO, servers, and
greedy decoding anywhere) give the rows the local engine gives; transformers and CTranslate2 sample with
one seed per batch, so their sampled text depends on how rows were batched, which differs between engines.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from humback.cluster import connect, reraise
from humback.config import ClusterConfig, EngineConfig
from humback.errors import HumbackError
from humback.files import atomic_write, ensure_dir, refuse_link
from humback.generation import load_generator
from humback.generation.meter import MeteredGenerator, usage_of
from humback.records import BadLine, RecordError, read_jsonl, write_jsonl
from humback.rowloop import Mapped, Work
from humback.stats import GeneratorStats

if TYPE_CHECKING:
    from humback.budget import Allowance

SHARD_SUFFIX = ".shards"


def shard_folder(out: Path) -> Path:
    """Where the finished shards of the stage output `out` are kept: `<out>.shards/`."""
    return out.with_name(out.name + SHARD_SUFFIX)


def finished_shards(out: Path) -> list[Path]:
    """The finished shard files of the stage output `out`, in shard order."""
    folder = shard_folder(out)
    return sorted(p for p in folder.glob("*.jsonl") if p.stem.isdigit()) if folder.is_dir() else []


class RayRunner:
    """The row loop on replicas of one generator: the engine settings and model each replica loads, and the
    cluster they run on. `fingerprint` identifies the outputs without loading the model here."""

    def __init__(
        self, engine: EngineConfig, model: str, cluster: ClusterConfig, allowance: Allowance | None = None
    ):
        from humback.models import model_fingerprint

        self.engine, self.model, self.cluster, self.allowance = engine, model, cluster, allowance
        weights = None if engine.backend == "openai" else model_fingerprint(model)
        identity = json.dumps([engine.identity(), model, weights], sort_keys=True, default=str)
        self.fingerprint = "ray:" + hashlib.sha256(identity.encode()).hexdigest()[:24]
        self.backend: str | None = None if engine.backend == "auto" else engine.backend

    def map(
        self,
        rows: list[dict],
        work: Work,
        out: Path,
        settings: dict,
        desc: str = "rows",
        length: Callable[[dict], int] = len,
        log: Callable[[str], None] = print,
    ) -> Mapped:
        """The shards' rows, in input order, written to `out` (`length` is the local runner's: each replica
        batches its own shard)."""
        store = ShardStore(out, {**settings, "model": self.fingerprint}, log=log)
        size = self.cluster.shard_rows
        shards = [rows[i : i + size] for i in range(0, len(rows), size)]
        todo = [k for k, shard in enumerate(shards) if store.ids(k) != [r["id"] for r in shard]]
        resumed = len(rows) - sum(len(shards[k]) for k in todo)
        if todo:
            self._run(todo, shards, work, store, desc, resumed, len(rows))
        missing = sum(len(shards[k]) for k in range(len(shards)) if store.ids(k) is None)
        if missing and self.allowance is not None:  # shards the budget held back
            raise self.allowance.stop(len(rows) - missing, len(rows))
        done = [row for k in range(len(shards)) for row in read_jsonl(store.path(k))]
        write_jsonl(out, done)
        return Mapped(done, resumed)

    def stats(self) -> GeneratorStats:
        return {"backend": self.backend or self.engine.backend}

    def _run(
        self,
        todo: list[int],
        shards: list[list[dict]],
        work: Work,
        store: ShardStore,
        desc: str,
        done: int,
        total: int,
    ) -> None:
        connect(self.cluster)
        import ray

        # One ledger for the stage: every replica claims its shard from it and counts the shard in when done.
        budget = self.allowance
        ledger = None if budget is None else ray.remote(num_cpus=0)(Ledger).remote(budget.state())
        items = [{"shard": k, "rows": json.dumps(shards[k], ensure_ascii=False)} for k in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        # Ray Data restarts an actor whose process dies and retries its shard (max_restarts and
        # max_task_retries default to -1 for actor pools); the driver writes each shard once.
        results = ds.map_batches(
            Replica,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=self.cluster.replicas),
            num_cpus=self.cluster.cpus_per_replica,
            num_gpus=self.cluster.gpus_per_replica or None,
            fn_constructor_kwargs={
                "load": partial(load_generator, self.engine, self.model),
                "work": work,
                "threads": max(1, int(self.cluster.cpus_per_replica)),
                "ledger": ledger,
            },
        )
        try:
            with tqdm(
                total=total, initial=done, desc=f"{desc} [ray x{self.cluster.replicas}]", unit="row"
            ) as bar:
                for result in results.iter_rows():
                    k = int(result["shard"])
                    produced = json.loads(result["rows"])
                    if produced is None:  # held back by the budget: left for the rerun
                        continue
                    if [r["id"] for r in produced] != [r["id"] for r in shards[k]]:
                        raise RecordError(f"shard {k}: the replica returned other rows than it was given")
                    store.write(k, produced)
                    if budget is not None and budget.on_spend is not None:  # a budget has a ledger
                        budget.on_spend(ray.get(ledger.spent.remote()))  # the shard's cost is in
                    self.backend = str(result["backend"])
                    bar.update(len(produced))
            if budget is not None:
                budget.load(ray.get(ledger.state.remote()))  # the stage's spending, as the ledger counted it
        except HumbackError:
            raise
        except Exception as e:  # noqa: BLE001 (Ray wraps a replica's error in its own types; reraise sorts them)
            reraise(
                e,
                f"the {len(store.finished())} finished shards are kept in {store.folder}: rerun the same"
                " command to resume",
            )


class Ledger:
    """The stage's budget.Allowance as a Ray actor: replicas claim each shard from it and count it in when
    done. Its calls run one at a time, so two replicas never both take the last of a budget."""

    def __init__(self, state: dict):
        from humback.budget import Allowance

        self.allowance = Allowance.restore(state)

    def claim(self, unit: int, rows: int) -> int | None:
        return self.allowance.claim(unit, rows, whole=True)

    def settle(self, unit: int, usage: dict, seconds: float) -> dict:
        return self.allowance.settle(unit, usage, seconds)

    def spent(self) -> dict:
        return self.allowance.spent()

    def state(self) -> dict:
        return self.allowance.state()


class Replica:
    """One generator for the life of the stage (a Ray Data actor); each call answers one shard, once the
    stage's ledger (when it has a budget) grants it."""

    def __init__(self, load, work, threads: int, ledger=None):
        import torch

        torch.set_num_threads(threads)  # the CPUs Ray reserved for this replica, no more
        self.generator, self.work, self.ledger = MeteredGenerator(load()), work, ledger

    def _granted(self, shard: int, rows: int) -> bool:
        if self.ledger is None:
            return True
        import ray

        while (granted := ray.get(self.ledger.claim.remote(shard, rows))) is None:
            time.sleep(0.2)  # the first shard is out and no row's cost is known yet
        return granted == rows

    def _shard(self, shard: int, todo: list[dict]) -> list[dict] | None:
        """The shard's rows, or None when the budget holds it back. The replica counts the shard in itself,
        so a replica waiting for its claim never waits on the driver."""
        if not self._granted(shard, len(todo)):
            return None
        before, began = usage_of(self.generator), time.time()
        done = self.work(self.generator, todo)
        if self.ledger is not None:
            import ray

            usage = {**(usage_of(self.generator) - before).as_dict(), "rows": len(todo)}
            ray.get(self.ledger.settle.remote(shard, usage, time.time() - began))
        return done

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        out = [
            json.dumps(self._shard(int(shard), json.loads(rows)), ensure_ascii=False)  # null: held back
            for shard, rows in zip(batch["shard"], batch["rows"])
        ]
        return {
            "shard": batch["shard"],
            "rows": np.array(out, dtype=object),
            "backend": np.array([self.generator.backend] * len(out), dtype=object),
        }


class ShardStore:
    """`<out>.shards/`: settings.json (what the rows depend on) and one NNNNN.jsonl per finished shard,
    each written atomically. Other settings than the stored ones start the folder over."""

    def __init__(self, out: Path, settings: dict, log=print):
        self.out, self.folder = out, shard_folder(out)
        self.stamp = stamp = json.dumps(settings, sort_keys=True, default=str)
        stamp_file = self.folder / "settings.json"
        refuse_link(self.folder)
        if self.folder.is_dir():
            foreign = [
                p.name
                for p in self.folder.iterdir()
                if p.name != "settings.json"
                and not (p.suffix == ".jsonl" and p.stem.isdigit())
                and not p.name.endswith(".tmp")
            ]
            if foreign:
                raise RecordError(
                    f"{self.folder} holds files humback did not write ({', '.join(foreign[:3])}):"
                    " move them away"
                )
            if not stamp_file.is_file() or stamp_file.read_text(encoding="utf-8") != stamp:
                log(f"[resume] {self.folder} was written with other settings; starting it over")
                shutil.rmtree(self.folder)

    def path(self, k: int) -> Path:
        return self.folder / f"{k:05d}.jsonl"

    def ids(self, k: int) -> list[str] | None:
        """The ids a finished shard holds, or None when it is missing or unreadable."""
        if not self.path(k).is_file():
            return None
        try:
            return [r["id"] for r in read_jsonl(self.path(k), required=("id",))]
        except (RecordError, BadLine):
            return None

    def write(self, k: int, rows: list[dict]) -> None:
        if not self.folder.is_dir():  # created with the first shard: a stage that fails first leaves nothing
            ensure_dir(self.folder)
            atomic_write(self.folder / "settings.json", self.stamp)
        write_jsonl(self.path(k), rows)

    def finished(self) -> list[Path]:
        return finished_shards(self.out)


def ordered_map(fn, items: list, cluster: ClusterConfig) -> Iterator:
    """fn(item) for every item as Ray tasks of cluster.cpus_per_replica CPUs each, results in item order.
    A bounded number of tasks is in flight (two per CPU of the cluster), so results wait for the driver
    without filling its memory; a worker that dies has its task retried by Ray."""
    connect(cluster)
    import ray

    task = ray.remote(num_cpus=cluster.cpus_per_replica)(_apply)
    window = max(2, int(2 * ray.cluster_resources().get("CPU", 1) / cluster.cpus_per_replica))
    queue = iter(items)
    pending = deque(task.remote(fn, item) for item in itertools.islice(queue, window))
    while pending:
        ref = pending.popleft()
        try:
            result = ray.get(ref)
        except Exception as e:  # noqa: BLE001 (as above)
            for other in pending:
                ray.cancel(other)
            reraise(e, "nothing was written: rerun the same command")
        for item in itertools.islice(queue, 1):
            pending.append(task.remote(fn, item))
        yield result


def _apply(fn, item):
    return fn(item)

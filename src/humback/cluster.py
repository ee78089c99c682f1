"""Generating stages on a Ray cluster (`cluster.engine: ray`; `pip install 'humback[ray]'`).

The rows of augment or curate stream through Ray Data's `map_batches` into a pool of replicas, each a
Ray actor holding one generator (any backend: vLLM on GPU nodes, CTranslate2 or transformers on CPU
nodes) for the whole stage. Work is cut into shards: fixed blocks of `cluster.shard_rows` input rows in
input order, one shard per Ray Data batch. The driver saves each finished shard at once, atomically, in
`<out>.shards/`; a killed driver followed by the same command computes only the shards that are missing,
and a replica whose worker dies has its shard retried by Ray (the driver writes each shard once, so no
row is repeated). The finished shards stay after the stage: they play the response cache's role on the
cluster, so a rerun that only changes selection settings costs no generation.

Each row keeps its own seed (row_seed), so backends that seed each request (vLLM, servers, and greedy
decoding anywhere) give the rows the local engine gives; transformers and CTranslate2 sample with one
seed per batch, so their sampled text depends on how rows were batched, which differs between engines.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from collections import deque
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import NoReturn

from tqdm.auto import tqdm

from humback.config import ClusterConfig, ConfigError, EngineConfig
from humback.errors import EnvironmentFault, HumbackError
from humback.files import atomic_write, ensure_dir, make_owned_dir, refuse_link, remove_owned
from humback.records import BadLine, RecordError, read_jsonl, write_jsonl

SHARD_SUFFIX = ".shards"


def shard_folder(out: Path) -> Path:
    """Where the finished shards of the stage output `out` are kept: `<out>.shards/`."""
    return out.with_name(out.name + SHARD_SUFFIX)


def finished_shards(out: Path) -> list[Path]:
    """The finished shard files of the stage output `out`, in shard order."""
    folder = shard_folder(out)
    return sorted(p for p in folder.glob("*.jsonl") if p.stem.isdigit()) if folder.is_dir() else []


class ClusterError(EnvironmentFault):
    """The Ray cluster cannot be reached or a replica failed for a reason outside humback's input:
    finished shards are kept; rerun the same command to resume (exit 3)."""


def connect(cluster: ClusterConfig) -> None:
    """Join (or, for address 'local', start) the Ray cluster, once per process. An instance the user
    started themselves is left as it is: humback never shuts down a Ray it did not start."""
    try:
        import ray
    except ImportError:
        raise ConfigError("cluster.engine: ray needs Ray: pip install 'humback[ray]' (or set cluster.engine:"
                          " local)") from None
    if ray.is_initialized():
        return
    from ray.data import DataContext

    _check_reachable(cluster.address)
    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if cluster.address == "local":
            # An explicit 'local' starts a fresh instance even where RAY_ADDRESS points elsewhere.
            ray.init(address="local", num_cpus=cluster.local_cpus, **kwargs)
        else:
            ray.init(address=cluster.address, **kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        raise ClusterError(f"cannot reach the Ray cluster at '{cluster.address}' ({type(e).__name__}: {e}); start"
                           " it (`ray start --head` on the head node) or fix cluster.address") from None
    DataContext.get_current().enable_progress_bars = False  # humback shows one bar per stage


def _check_reachable(address: str) -> None:
    """Fail in seconds, naming the address, where Ray would wait a minute or more for a head that is not
    there ('local' and 'auto' need no check: Ray answers those at once)."""
    import socket
    from urllib.parse import urlsplit

    if address in ("local", "auto"):
        return
    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise ConfigError(f"cluster.address '{address}' is not 'local', 'auto', HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as e:
        raise ClusterError(f"cannot reach the Ray cluster at '{address}' ({e.strerror or e}); start it (`ray start"
                           " --head` on the head node) or fix cluster.address") from None


class Replicas:
    """Stands in for a Generator in a generating stage: the engine settings and model each replica loads
    (with `load`, humback.generation.load_generator), and the cluster they run on. `fingerprint`
    identifies the outputs without loading the model here."""

    def __init__(self, engine: EngineConfig, model: str, cluster: ClusterConfig, load):
        from humback.models import model_fingerprint

        self.engine, self.model, self.cluster, self.load = engine, model, cluster, load
        weights = None if engine.backend == "openai" else model_fingerprint(model)
        identity = json.dumps([engine.identity(), model, weights], sort_keys=True, default=str)
        self.fingerprint = "ray:" + hashlib.sha256(identity.encode()).hexdigest()[:24]
        self.backend: str | None = None if engine.backend == "auto" else engine.backend
        self.chunk_size = cluster.shard_rows

    def map(self, rows: list[dict], work, out: Path, settings: dict, desc: str) -> int:
        """Write work's rows for `rows` to `out` in input order, through the shards; return the rows whose
        shards an earlier run had finished."""
        store = ShardStore(out, settings)
        size = self.cluster.shard_rows
        shards = [rows[i:i + size] for i in range(0, len(rows), size)]
        todo = [k for k, shard in enumerate(shards) if store.ids(k) != [r["id"] for r in shard]]
        resumed = len(rows) - sum(len(shards[k]) for k in todo)
        if todo:
            self._run(todo, shards, work, store, desc, resumed, len(rows))
        write_jsonl(out, (row for k in range(len(shards)) for row in read_jsonl(store.path(k))))
        return resumed

    def _run(self, todo: list[int], shards: list[list[dict]], work, store: ShardStore, desc: str, done: int,
             total: int) -> None:
        connect(self.cluster)
        import ray

        items = [{"shard": k, "rows": json.dumps(shards[k], ensure_ascii=False)} for k in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        # Ray Data restarts an actor whose process dies and retries its shard (max_restarts and
        # max_task_retries default to -1 for actor pools); the driver writes each shard once.
        results = ds.map_batches(
            Replica, batch_size=1, compute=ray.data.ActorPoolStrategy(size=self.cluster.replicas),
            num_cpus=self.cluster.cpus_per_replica, num_gpus=self.cluster.gpus_per_replica or None,
            fn_constructor_kwargs={"load": partial(self.load, self.engine, self.model), "work": work,
                                   "threads": max(1, int(self.cluster.cpus_per_replica))})
        try:
            with tqdm(total=total, initial=done, desc=f"{desc} [ray x{self.cluster.replicas}]", unit="row") as bar:
                for result in results.iter_rows():
                    k = int(result["shard"])
                    produced = json.loads(result["rows"])
                    if [r["id"] for r in produced] != [r["id"] for r in shards[k]]:
                        raise RecordError(f"shard {k}: the replica returned other rows than it was given")
                    store.write(k, produced)
                    self.backend = str(result["fingerprint"]).split(":", 1)[0]
                    bar.update(len(produced))
        except HumbackError:
            raise
        except Exception as e:  # noqa: BLE001 (Ray wraps a replica's error in its own types; _reraise sorts them)
            _reraise(e, f"the {len(store.finished())} finished shards are kept in {store.folder}: rerun the same"
                        " command to resume")


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
            _reraise(e, "nothing was written: rerun the same command")
        for item in itertools.islice(queue, 1):
            pending.append(task.remote(fn, item))
        yield result


def _apply(fn, item):
    return fn(item)


def _reraise(e: BaseException, kept: str) -> NoReturn:
    """A worker's failure as humback's own error when it is one (a replica's ModelError, a --strict
    RecordError), else as a ClusterError saying what was kept."""
    cause = _humback_cause(e)
    if cause is not None:
        raise cause from None
    raise ClusterError(f"a Ray worker failed ({type(e).__name__}: {_first_line(e)}); {kept}") from e


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
        _train_loop, train_loop_config={"train": train, "threads": max(1, int(cluster.train_cpus_per_worker))},
        scaling_config=ScalingConfig(num_workers=cluster.train_workers, use_gpu=gpus > 0,
                                     resources_per_worker={"CPU": cluster.train_cpus_per_worker,
                                                           **({"GPU": gpus} if gpus else {})}),
        run_config=RunConfig(name=out.name, storage_path=str(records.resolve()),
                             failure_config=FailureConfig(max_failures=0)))
    try:
        trainer.fit()
    except Exception as e:  # noqa: BLE001 (Ray Train wraps a worker's error; _reraise sorts them)
        _reraise(e, "rerun the same command: training resumes from its last checkpoint")
    remove_owned(records)
    return json.loads((out / "humback_train.json").read_text(encoding="utf-8"))["stats"]


def _train_loop(config: dict) -> None:
    import torch

    torch.set_num_threads(config["threads"])
    config["train"]()


class Replica:
    """One generator for the life of the stage (a Ray Data actor); each call answers one shard."""

    def __init__(self, load, work, threads: int):
        import torch

        torch.set_num_threads(threads)  # the CPUs Ray reserved for this replica, no more
        self.generator, self.work = load(), work

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        out = [json.dumps(self.work(self.generator, json.loads(rows)), ensure_ascii=False) for rows in batch["rows"]]
        return {"shard": batch["shard"], "rows": np.array(out, dtype=object),
                "fingerprint": np.array([self.generator.fingerprint] * len(out), dtype=object)}


class ShardStore:
    """`<out>.shards/`: settings.json (what the rows depend on) and one NNNNN.jsonl per finished shard,
    each written atomically. Other settings than the stored ones start the folder over."""

    def __init__(self, out: Path, settings: dict, log=print):
        self.out, self.folder = out, shard_folder(out)
        self.stamp = stamp = json.dumps(settings, sort_keys=True, default=str)
        stamp_file = self.folder / "settings.json"
        refuse_link(self.folder)
        if self.folder.is_dir():
            foreign = [p.name for p in self.folder.iterdir()
                       if p.name != "settings.json" and not (p.suffix == ".jsonl" and p.stem.isdigit())
                       and not p.name.endswith(".tmp")]
            if foreign:
                raise RecordError(f"{self.folder} holds files humback did not write ({', '.join(foreign[:3])}):"
                                  " move them away")
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


def _humback_cause(e: BaseException) -> HumbackError | None:
    """The humback error inside Ray's wrappers (a replica's ModelError, say), if there is one."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [e]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, HumbackError):
            return err
        stack += [err.__cause__, err.__context__, getattr(err, "cause", None)]
    # A replica that died in its constructor reaches the driver as text only (Ray's ActorDiedError keeps
    # the remote traceback in its message): the last "humback.<module>.<Class>: message" line names it.
    import importlib
    import re

    found = re.findall(r"^(humback(?:\.\w+)+)\.(\w+): (.+)$", str(e), flags=re.MULTILINE)
    if found:
        module, name, message = found[-1]
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            return None
        if isinstance(cls, type) and issubclass(cls, HumbackError):
            try:
                return cls(message)
            except TypeError:  # an error class with other constructor arguments
                return None
    return None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]

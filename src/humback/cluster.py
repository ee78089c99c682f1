"""Connecting to a Ray cluster (`cluster.engine: ray`; `pip install 'humback[ray]'`), and what its failures
mean: a replica's or a worker's humback error is raised as itself, anything else as a ClusterError saying
what was kept. The row runner (ray_runner.py) and Ray Train (training/ray_train.py) run on it.
"""

from __future__ import annotations

from typing import NoReturn

from humback.config import ClusterConfig, ConfigError
from humback.errors import EnvironmentFault, HumbackError


class ClusterError(EnvironmentFault):
    """The Ray cluster cannot be reached or a replica failed for a reason outside humback's input:
    finished shards are kept; rerun the same command to resume (exit 3)."""


def connect(cluster: ClusterConfig) -> None:
    """Join (or, for address 'local', start) the Ray cluster, once per process. An instance the user
    started themselves is left as it is: humback never shuts down a Ray it did not start."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "cluster.engine: ray needs Ray: pip install 'humback[ray]' (or set cluster.engine: local)"
        ) from None
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
        raise ClusterError(
            f"cannot reach the Ray cluster at '{cluster.address}' ({type(e).__name__}: {e}); start"
            " it (`ray start --head` on the head node) or fix cluster.address"
        ) from None
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
        raise ClusterError(
            f"cannot reach the Ray cluster at '{address}' ({e.strerror or e}); start it (`ray start"
            " --head` on the head node) or fix cluster.address"
        ) from None


def reraise(e: BaseException, kept: str) -> NoReturn:
    """A worker's failure as humback's own error when it is one (a replica's ModelError, a --strict
    RecordError), else as a ClusterError saying what was kept."""
    cause = _humback_cause(e)
    if cause is not None:
        raise cause from None
    raise ClusterError(f"a Ray worker failed ({type(e).__name__}: {_first_line(e)}); {kept}") from e


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

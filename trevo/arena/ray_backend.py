"""The arena's Ray backend (``trevo arena --backend ray [--address ADDR]``): each run a Ray task, the
results returned to the driver, which alone writes the SQLite store (SQLite over a network file system
is not safe; Zoology and MAD-lab run their sweeps on Ray the same way).

Each run asks for its resources — one GPU for a run on CUDA, its share of CPU threads otherwise — and
runs in a fresh worker process (``max_calls=1``), as the local backend's runs do, so that a run's peak
memory is its own. A task whose worker is lost (the process killed, a node gone) is retried once by Ray,
then recorded as failed; the sweep goes on. Run directories (checkpoints) are written where the task
runs: on a multi-machine cluster, give ``--out`` on a file system every node sees for resumes to find
them. Ray is an optional extra: ``pip install 'trevo[ray]'``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from trevo.errors import TrevoError


class RayUnavailableError(TrevoError, RuntimeError):
    """``--backend ray`` without Ray installed, or a cluster address that cannot be reached."""


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("--backend ray needs Ray: pip install 'trevo[ray]' (or use --backend local)") \
            from None
    return ray


def connect(address: str | None) -> Any:
    """Ray, connected: to ``address`` (a running cluster, e.g. ``ray://head:10001`` or ``auto``), or to a
    cluster started here when None; a cluster the caller already started (``ray.init``) is used as it is."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RayUnavailableError(f"cannot connect to the Ray cluster at {address}: {e}") from None
    return ray


def _call(fn: Callable[..., Any], threads: int, args: tuple) -> Any:
    """``fn(*args)`` in a Ray worker, with the run's share of torch threads."""
    import torch

    torch.set_num_threads(threads)
    return fn(*args)


def run_on_ray(fn: Callable[..., Any], jobs: list[tuple[str, tuple, bool]], threads: int,
               address: str | None) -> Iterator[tuple[str, Any, str | None]]:
    """Run ``fn(*args)`` for each ``(key, args, on_gpu)`` as a Ray task; yields ``(key, value, None)`` as each
    returns, or ``(key, None, error)`` for a task Ray could not complete (its worker lost twice)."""
    ray = connect(address)
    remote = ray.remote(max_calls=1, max_retries=1)(_call)
    pending = {}
    for key, args, on_gpu in jobs:
        resources = {"num_gpus": 1, "num_cpus": 1} if on_gpu else {"num_cpus": threads}
        pending[remote.options(**resources).remote(fn, threads, args)] = key
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(done[0])
        try:
            yield key, ray.get(done[0]), None
        except ray.exceptions.RayError as e:
            yield key, None, f"the run's Ray task failed ({type(e).__name__}: {str(e).splitlines()[0]})"

"""A Dask client for the engine `dask`: the scheduler DASK_SCHEDULER_ADDRESS names, or a
LocalCluster started for the run. Dask is optional (`pip install .[dask]`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mlops.errors import InputError

ADDRESS = "DASK_SCHEDULER_ADDRESS"
CONNECT_SECONDS = 10
LOCAL_WORKERS = 2  # one process per core of a 2-core runner; one thread each (one BLAS thread)


@contextlib.contextmanager
def client() -> Iterator[Any]:
    """A connected distributed.Client; an unreachable scheduler is a one-line InputError."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError(
            "engine dask: Dask is not installed (pip install '.[dask]', or use engine: local)"
        ) from None
    address = os.environ.get(ADDRESS, "").strip()
    if address:
        try:
            connected = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{ADDRESS}={address}: no Dask scheduler answers ({reason})") from None
        with connected:
            yield connected
        return
    with (
        LocalCluster(
            n_workers=LOCAL_WORKERS,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"OMP_NUM_THREADS": "1", "DO_NOT_TRACK": "1"},
        ) as local,
        Client(local, set_as_default=False) as connected,
    ):
        yield connected


def in_order(task: Callable, calls: Iterable[tuple], shared: Any) -> Iterator[Any]:
    """task(*call, shared) as one Dask task per call, `shared` sent to every worker once; the
    results in call order, each released once the caller takes the next."""
    with client() as dask:
        handle = dask.scatter(shared, broadcast=True)
        futures = [dask.submit(task, *call, handle, pure=False) for call in calls]
        for future in futures:
            yield future.result()
            future.release()


def in_processes(
    task: Callable, calls: Iterable[tuple], shared: Any, workers: int
) -> Iterator[Any]:
    """task(*call, shared) on `workers` local processes, the results in call order; at most one
    result more than there are workers waits to be taken (bounded memory)."""
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    # forkserver, not fork: this process may hold threads (Arrow's, an import on another thread)
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending: deque = deque()
        for call in calls:
            pending.append(pool.submit(task, *call, shared))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def local_workers() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

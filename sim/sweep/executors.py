"""Where chunks of work run: this process, local worker processes, or a Dask cluster.

Every executor yields ``(index, result)`` as tasks finish (any order); the caller writes
each result to its own part file at once, so a killed sweep keeps what finished.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from hw_models.errors import ClusterSimError


class Executor:
    def map(self, fn: Callable, args: list[tuple]) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class InProcess(Executor):
    def map(self, fn, args):
        for i, a in enumerate(args):
            yield i, fn(*a)


def windowed(submit: Callable, wait_one: Callable, args: Iterable[tuple],
             window: int) -> Iterator[tuple[int, Any]]:
    """At most ``window`` tasks in flight: ``args`` may be a generator of millions of tasks,
    and only the running ones are held in memory. ``wait_one(futures)`` returns one done."""
    pending: dict[Any, int] = {}
    it = iter(enumerate(args))
    while True:
        for i, a in itertools.islice(it, window - len(pending)):
            pending[submit(a)] = i
        if not pending:
            return
        fut = wait_one(pending)
        yield pending.pop(fut), fut.result()


class LocalProcesses(Executor):
    """concurrent.futures worker processes (``--workers N``)."""

    def __init__(self, workers: int):
        self.pool = ProcessPoolExecutor(max_workers=workers)
        self.window = 4 * workers

    def map(self, fn, args):
        def wait_one(futures):
            return next(iter(wait(futures, return_when=FIRST_COMPLETED).done))
        yield from windowed(lambda a: self.pool.submit(fn, *a), wait_one, args, self.window)

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class DaskExecutor(Executor):
    """A Dask distributed cluster at ``scheduler`` (tcp://host:port), or a LocalCluster."""

    def __init__(self, scheduler: str | None = None, workers: int = 1, client=None):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ClusterSimError("--executor dask needs dask[distributed]: "
                                  "pip install 'clustersim[dist]'") from None
        self.cluster = None
        if client is not None:
            self.client = client
        elif scheduler:
            try:
                self.client = Client(scheduler, timeout="10s")
            except OSError as exc:
                raise ClusterSimError(f"cannot reach the Dask scheduler {scheduler!r}: {exc}") from None
        else:
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                        dashboard_address=None)
            self.client = Client(self.cluster)
        self._owns = client is None

    def map(self, fn, args):
        from dask.distributed import wait as dask_wait
        window = 4 * max(1, len(self.client.scheduler_info().get("workers", {})))

        def wait_one(futures):
            return next(iter(dask_wait(list(futures), return_when="FIRST_COMPLETED").done))
        yield from windowed(lambda a: self.client.submit(fn, *a, pure=False), wait_one, args,
                            window)

    def close(self) -> None:
        if self._owns:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()


def make(kind: str, workers: int, scheduler: str | None) -> Executor:
    if kind == "dask":
        return DaskExecutor(scheduler, max(workers, 1))
    if kind != "local":
        raise ClusterSimError(f"--executor {kind!r}; allowed: local, dask")
    if scheduler:
        raise ClusterSimError("--scheduler is for --executor dask")
    return InProcess() if workers <= 1 else LocalProcesses(workers)

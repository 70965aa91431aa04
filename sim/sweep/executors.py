"""Where chunks of work run: this process, local worker processes, or a Dask cluster.

Every executor yields ``(index, result)`` as tasks finish (any order); the caller writes
each result to its own part file at once, so a killed sweep keeps what finished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
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


class LocalProcesses(Executor):
    """concurrent.futures worker processes (``--workers N``)."""

    def __init__(self, workers: int):
        self.pool = ProcessPoolExecutor(max_workers=workers)

    def map(self, fn, args):
        futures = {self.pool.submit(fn, *a): i for i, a in enumerate(args)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()

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
        from dask.distributed import as_completed as dask_completed
        futures = [self.client.submit(fn, *a, pure=False) for a in args]
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in dask_completed(futures):
            yield index[fut.key], fut.result()
            fut.release()

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

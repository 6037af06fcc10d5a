"""Runners: where steps execute. ``local`` runs Python steps in the calling thread (and a
pipeline's commands on a thread pool); ``threads``, ``processes`` and ``dask`` hand each
step to a pool or a cluster as a task (see tasks.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Executor as _Pool
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from zcas.cas.errors import ZcasError


class Executor:
    name = "local"

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class PoolExecutor(Executor):
    def __init__(self, name: str, jobs: int):
        self.name = name
        self.pool: _Pool
        if name == "threads":
            self.pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="zcas-task")
        else:
            # Here, not at the top: multiprocessing and the process pool cost ~5 ms of every
            # zcas start (measured with -X importtime) and only this runner needs them.
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork"))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self.pool.submit(fn, *args)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class DaskExecutor(Executor):
    name = "dask"

    def __init__(self, scheduler: str | None, jobs: int):
        try:  # lazy: dask is an optional dependency (zcas[dask]), needed only by this runner
            from distributed import Client, LocalCluster
        except ImportError:
            raise ZcasError("the dask runner needs dask's distributed scheduler: pip install 'zcas[dask]'") from None
        self.cluster = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout="10s")
            except OSError as e:
                raise ZcasError(f"cannot reach the dask scheduler at {scheduler}: {e}") from None
        else:
            self.cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, host="127.0.0.1",
                                        dashboard_address=None, processes=True)
            self.client = Client(self.cluster)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:  # a dask future: result() as a Future's
        return self.client.submit(fn, *args, pure=False, retries=2)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make(runner: str, scheduler: str | None = None, jobs: int | None = None) -> Executor | None:
    jobs = jobs or os.cpu_count() or 1
    if runner == "local":
        return None
    if runner in ("threads", "processes"):
        return PoolExecutor(runner, jobs)
    if runner == "dask":
        return DaskExecutor(scheduler, jobs)
    raise ZcasError(f"unknown runner {runner!r}")

"""Where the packager's tasks (:mod:`packager.tasks`) run: in this process, in ``--workers N`` local processes, or
on a Ray cluster (``--cluster ray://HOST:PORT`` | ``auto``; :mod:`packager.ray_runner`).

A runner's :meth:`Runner.map` runs a list of tasks and returns their results in task order, reporting each one
as it completes (the progress bar's tick). Tasks are pure (:mod:`packager.tasks`), so a task whose worker died
(killed, out of memory) is run again: its result cannot differ. An error a task raises (bad input, a bug) is not
retried: it is raised in the driver as itself. :func:`current` is the runner of the packaging run in progress
(:func:`using` sets it; by default, this process).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

from bbmr_stream.errors import ClusterError, InputError

RETRIES = 3  # runs of a task after the first when its worker dies


@dataclass(frozen=True)
class RunConfig:
    """How a packaging run executes its tasks: ``workers`` local processes (1: this process; 0: one per CPU core)
    or, with ``cluster``, on a Ray cluster at that address (``ray://HOST:PORT``, or ``auto`` for the running
    local cluster); ``retries``: runs of a task after the first when its worker dies."""

    workers: int = 1
    cluster: str | None = None
    retries: int = RETRIES

    def check(self) -> None:
        if not 0 <= self.workers <= 256:
            raise InputError(f"--workers {self.workers}: 0 (one per core) to 256")
        if self.cluster is not None and not re.fullmatch(r"auto|(ray://)?[\w.\-\[\]:]+:\d{1,5}", self.cluster):
            raise InputError(f"--cluster {self.cluster}: ray://HOST:PORT, HOST:PORT or auto")
        if not 0 <= self.retries <= 100:
            raise InputError("retries: 0..100")

    @property
    def processes(self) -> int:
        """``workers``, or (0) one per CPU core, at most one per :data:`WORKER_GB` of available memory."""
        if self.workers:
            return self.workers
        return max(1, min(os.cpu_count() or 1, int(_available_gb() // WORKER_GB)))


WORKER_GB = 3.0  # memory one auto worker may need (a task of 10 encoders at 1440p: ~2.5 GB measured peak)


def _available_gb() -> float:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 1e9


class Runner(Protocol):
    """Runs tasks; ``local_files``: its workers read the driver's files (the stream being written); ``workers``:
    how many tasks it runs at once."""

    local_files: bool
    workers: int

    def map(self, fn: Callable, tasks: list, shared=None,
            done: Callable[[int, object], None] | None = None) -> list | None:
        """``[fn(task) | fn(task, shared) for task in tasks]`` (``shared``: one object every task reads, sent once
        where the runner can); with ``done``, each result goes to ``done(index, result)`` as it completes and is
        not kept (None is returned: a title's coded packets need not fit in memory)."""

    def describe(self) -> dict:
        """How it ran, for the manifest."""


class Serial:
    """Tasks in this process, one after the other."""

    local_files = True
    workers = 1

    def map(self, fn, tasks, shared=None, done=None) -> list | None:
        out = []
        for i, t in enumerate(tasks):
            r = fn(t) if shared is None else fn(t, shared)
            if done is not None:
                done(i, r)
            else:
                out.append(r)
        return None if done is not None else out

    def describe(self) -> dict:
        return {"runner": "process", "workers": 1}

    def close(self) -> None:
        pass


def _spawn_context():
    import multiprocessing

    return multiprocessing.get_context("spawn")  # torch's threads do not survive fork()


def _worker_init() -> None:
    """A local worker ignores Ctrl-C (the terminal sends it to the whole process group): the driver stops it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Processes:
    """Tasks in ``n`` local worker processes (spawned once, kept for the run; each keeps its models). A worker
    that dies breaks the pool: it is made again and the tasks without a result are submitted again (at most
    ``retries`` times)."""

    local_files = True

    def __init__(self, n: int, retries: int = RETRIES) -> None:
        self.n = self.workers = n
        self.retries = retries
        self.pool = None
        self.restarts = 0

    def _pool(self):
        from concurrent.futures import ProcessPoolExecutor

        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.n, mp_context=_spawn_context(), initializer=_worker_init)
        return self.pool

    def map(self, fn, tasks, shared=None, done=None) -> list | None:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        results: dict[int, object] = {}
        finished_ids: set[int] = set()
        lost = 0
        while len(finished_ids) < len(tasks):
            pool = self._pool()
            futs = {pool.submit(fn, t) if shared is None else pool.submit(fn, t, shared): i
                    for i, t in enumerate(tasks) if i not in finished_ids}
            try:
                while futs:
                    finished, _ = wait(futs, return_when=FIRST_COMPLETED)
                    for f in finished:
                        i = futs.pop(f)
                        r = f.result()
                        finished_ids.add(i)
                        if done is not None:
                            done(i, r)
                        else:
                            results[i] = r
            except BrokenProcessPool:
                lost += 1
                self.restarts += 1
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = None
                if lost > self.retries:
                    raise ClusterError(f"--workers {self.n}: worker processes died {lost} times in one stage (killed "
                                       f"or out of memory?); gave up") from None
            except BaseException:
                self.close(kill=True)
                raise
        return None if done is not None else [results[i] for i in range(len(tasks))]

    def describe(self) -> dict:
        return {"runner": "processes", "workers": self.n, "pool_restarts": self.restarts}

    def close(self, kill: bool = False) -> None:
        """Stop the workers (``kill``: at once, mid-task: the run failed or was interrupted)."""
        if self.pool is None:
            return
        procs = list(getattr(self.pool, "_processes", {}).values()) if kill else []
        self.pool.shutdown(wait=not kill, cancel_futures=True)
        for p in procs:
            p.terminate()
        self.pool = None


_CURRENT: contextvars.ContextVar = contextvars.ContextVar("bbmr_runner", default=None)


def current():
    """The runner of the packaging run in progress (a :class:`Serial` outside one)."""
    return _CURRENT.get() or Serial()


def make_runner(cfg: RunConfig):
    """The runner ``cfg`` asks for (a Ray cluster is connected to here: ClusterError when it cannot be)."""
    cfg.check()
    if cfg.cluster is not None:
        from packager.ray_runner import RayRunner

        return RayRunner(cfg.cluster, cfg.retries)
    n = cfg.processes
    return Serial() if n == 1 else Processes(n, cfg.retries)


@contextlib.contextmanager
def using(cfg: RunConfig | None) -> Iterator[object]:
    """Run the packaging inside with the runner of ``cfg`` (None: keep the current one); closed after."""
    if cfg is None:
        yield current()
        return
    runner = make_runner(cfg)
    token = _CURRENT.set(runner)
    try:
        yield runner
    finally:
        _CURRENT.reset(token)
        runner.close()

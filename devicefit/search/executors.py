"""The Executor plugin point: where trials run. Same results whichever runs them."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import sys
import time
from abc import ABC, abstractmethod
from typing import Any, Protocol, TypeVar

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Request(Protocol[R_co]):
    """Work for a worker: a TrialRequest (search/trial.py) or a share of a sensitivity
    profile (search/sensitivity_request.py). Plain data naming its task, so it can be sent
    to another process or node; ``run`` does the work there."""

    @property
    def task(self) -> Any: ...

    def run(self) -> R_co:
        """Do the work, on whichever worker or node the executor chose.

        Returns:
            The result: a TrialOutput, or a sensitivity share's points.
        """
        ...


class Executor(ABC):
    """Runs requests (trials, sensitivity shares) and hands back futures of their results.

    Contract (tests/search/test_executors.py): ``submit`` never raises for a bad
    candidate (the output carries the error); ``pause``/``resume`` stop and
    restart all trial work so a latency measurement has the CPU to itself;
    ``shutdown`` releases the workers.

    A new executor, e.g. one thread per request (then add it to the conformance
    test's ``KINDS``)::

        class ThreadExecutor(Executor):
            def __init__(self, workers: int) -> None:
                self.workers = workers
                self._pool = cf.ThreadPoolExecutor(workers)

            def submit(self, request: Request[R]) -> cf.Future[R]:
                return self._pool.submit(request.run)

            def shutdown(self, cancel: bool = False) -> None:
                self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
    """

    workers: int = 1

    @abstractmethod
    def submit(self, request: Request[R]) -> cf.Future[R]:
        """Start ``request`` on a worker.

        Args:
            request: a TrialRequest or a share of a sensitivity profile.

        Returns:
            The future of ``request.run()``'s result; it fails only when the worker
            itself is lost (a candidate's own failure is in the result).
        """

    def pause(self) -> None:  # noqa: B027 - optional hook
        """Stop all trial work (no-op where nothing runs beside the driver)."""

    def resume(self) -> None:  # noqa: B027 - optional hook
        """Let trial work continue."""

    @abstractmethod
    def shutdown(self, cancel: bool = False) -> None:
        """Release the workers.

        Args:
            cancel: drop requests not finished (Ctrl-C, a failed driver) instead of
                waiting for them.
        """


class InProcessExecutor(Executor):
    """Runs each trial at submit time in the calling process (debugging, tests)."""

    def __init__(self, threads: int = 1) -> None:
        self.workers = 1
        _configure_threads(threads)

    def submit(self, request: Request[R]) -> cf.Future[R]:
        future: cf.Future[R] = cf.Future()
        future.set_result(request.run())
        return future

    def shutdown(self, cancel: bool = False) -> None:
        pass


class ProcessPoolExecutor(Executor):
    """N spawned worker processes, each recycled after ``recycle_after`` trials because
    the TFLite converter leaks memory on every call."""

    def __init__(
        self, workers: int, threads: int, log_path: str | None = None, recycle_after: int = 20
    ) -> None:
        self.workers, self.threads = workers, threads
        self._pool = cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            max_tasks_per_child=recycle_after,
            initializer=_init_worker,
            initargs=(threads, log_path),
        )
        self._paused: list[int] = []

    def submit(self, request: Request[R]) -> cf.Future[R]:
        return self._pool.submit(run_request, request)

    def _pids(self) -> list[int]:
        # The pool keeps its live worker processes here; there is no public accessor.
        processes = getattr(self._pool, "_processes", None) or {}
        return list(processes)

    def pause(self) -> None:
        self._paused = []
        for pid in self._pids():
            try:
                os.kill(pid, signal.SIGSTOP)
                self._paused.append(pid)
            except ProcessLookupError:
                pass
        # SIGSTOP is delivered asynchronously: wait until every worker really stopped,
        # or the measurement would start while one still computes.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not all(map(_stopped, self._paused)):
            time.sleep(0.002)

    def resume(self) -> None:
        for pid in self._paused:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self._paused = []

    def shutdown(self, cancel: bool = False) -> None:
        self.resume()
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
        if cancel:
            for pid in self._pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def run_request(request: Request[R]) -> R:
    """What a worker process runs (a module-level function, so the pool can pickle it).

    Args:
        request: the request sent to the worker.

    Returns:
        ``request.run()``'s result.
    """
    return request.run()


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True  # gone, or no /proc (not Linux): nothing more to wait for
    return state in ("T", "t", "Z", "X")


def _configure_threads(threads: int) -> None:
    from devicefit.quiet import silence_tensorflow

    silence_tensorflow()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already initialized in this process
        pass


def _init_worker(threads: int, log_path: str | None) -> None:
    # Workers ignore Ctrl-C: the driver decides what happens to running trials.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if log_path:
        # TensorFlow's C++ code writes straight to fds 1 and 2; keep it off the terminal.
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    _configure_threads(threads)


def _die_with_parent() -> None:
    """A worker whose driver was killed (kill -9) must not go on using the CPU."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:
        pass


def make_executor(
    workers: int,
    log_path: str | None = None,
    recycle_after: int = 20,
    threads: int | None = None,
) -> Executor:
    """The local pool; each trial trains on ``threads`` threads (default: the cores shared
    out among the workers).

    Args:
        workers: how many worker processes run requests at once.
        log_path: the file the workers' output goes to (None: where the driver's goes).
        recycle_after: the requests after which a worker process is replaced (the TFLite
            converter leaks memory).
        threads: TensorFlow threads per worker (None: the default above).

    Returns:
        A ProcessPoolExecutor of ``workers`` spawned processes.
    """
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    return ProcessPoolExecutor(workers, threads, log_path, recycle_after)

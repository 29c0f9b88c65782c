"""The agent's measurement queue: one measurement at a time, each in a child process.

The child runs ``devicefit.deploy.bench`` with a time limit and an address-space
limit, so a model that crashes the runtime, hangs, or asks for more memory than
the device has fails its own request and the agent keeps serving.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from devicefit.deploy.bench import MEMORY_ENV, child_env, write_model_files


class JobFailed(Exception):
    """The model could not be measured; ``status`` is the HTTP answer for it."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    contents: list[bytes]
    spec: dict[str, Any]
    rounds: bool  # paired rounds of every file, else one measurement of the one file
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    error: JobFailed | None = None


def run_in_child(
    contents: list[bytes],
    spec: dict[str, Any],
    timeout_s: float,
    memory_mb: int | None,
    rounds: bool = False,
) -> dict[str, Any]:
    """Measure ``contents`` in a fresh process (one file, or paired rounds of several);
    JobFailed says why it could not be.

    Files get fixed names in a fresh folder: nothing from the client ever becomes part
    of a path.

    Args:
        contents: the TFLite files' bytes, as uploaded.
        spec: the checked benchmark settings, passed to ``devicefit.deploy.bench`` as JSON.
        timeout_s: wall-clock limit for the child process.
        memory_mb: the child's address-space limit, or None for none.
        rounds: measure paired rounds of every file instead of one file once.

    Returns:
        The measurement the child printed (its last JSON line).

    Raises:
        JobFailed: the child timed out, crashed, ran out of memory, rejected the model,
            or printed no result.
    """
    with tempfile.TemporaryDirectory(prefix="devicefit-agent-") as folder:
        paths = write_model_files(folder, contents)
        done = _run_bench(paths, spec, timeout_s, _bench_env(memory_mb), rounds)
    if done.returncode != 0:
        return _raise_child_failure(done, memory_mb)
    return _printed_result(done.stdout)


def _bench_env(memory_mb: int | None) -> dict[str, str]:
    """The measuring process's environment, with its address-space limit when there is one."""
    env = child_env()
    if memory_mb is not None:
        # Set by the child itself (bench.py): a preexec_fn in a threaded server can
        # deadlock between fork and exec.
        env[MEMORY_ENV] = str(int(memory_mb))
    return env


def _run_bench(
    paths: list[str], spec: dict[str, Any], timeout_s: float, env: dict[str, str], rounds: bool
) -> subprocess.CompletedProcess[str]:
    """Run ``devicefit.deploy.bench`` on ``paths``; JobFailed when it exceeds ``timeout_s``."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "devicefit.deploy.bench"]
            + (["--rounds"] if rounds else [])
            + [*paths, json.dumps(spec)],
            capture_output=True,
            text=True,
            errors="replace",  # a crashing runtime may print anything
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise JobFailed(f"the model did not finish within the {timeout_s:.0f} s limit") from None


def _printed_result(stdout: str) -> dict[str, Any]:
    """The measurement in the child's last JSON line; JobFailed when it printed none."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        raise JobFailed("the measuring process printed no result") from None


def _raise_child_failure(done: subprocess.CompletedProcess, memory_mb: int | None) -> Any:
    tail = " / ".join((done.stderr or "").strip().splitlines()[-2:])[-400:]
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        raise JobFailed(f"the runtime crashed ({name}) on this model: {tail}")
    if memory_mb is not None and any(
        sign in tail for sign in ("MemoryError", "bad_alloc", "allocate", "reshape")
    ):
        raise JobFailed(f"the model needs more than the {memory_mb} MB memory limit: {tail}")
    raise JobFailed(f"the runtime rejected the model (exit {done.returncode}): {tail}")


class MeasurementQueue:
    """FIFO of measurements served by one thread, so two never overlap on the device."""

    def __init__(self, timeout_s: float, memory_mb: int | None, max_queued: int = 16) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_queued = max_queued
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._pending = 0  # queued + running
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="measurements", daemon=True)
        self._thread.start()

    @property
    def length(self) -> int:
        """How many measurements are queued or running."""
        with self._lock:
            return self._pending

    def measure(
        self, contents: list[bytes], spec: dict[str, Any], rounds: bool = False
    ) -> dict[str, Any]:
        """Queue one measurement (or paired rounds) and wait for it (callers are HTTP
        handler threads).

        Args:
            contents: the TFLite files' bytes.
            spec: the checked benchmark settings.
            rounds: paired rounds of every file, else one measurement of the one file.

        Returns:
            The measurement, with ``measured_from`` and ``measured_until`` (epoch seconds):
            when the device was busy with it.

        Raises:
            JobFailed: (503) the queue is full, or the measurement itself failed (its status).
        """
        with self._lock:
            if self._pending >= self.max_queued:
                raise JobFailed(f"{self._pending} measurements already queued; retry later", 503)
            self._pending += 1
        job = _Job(contents, spec, rounds)
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            began = time.time()
            try:
                # A cool-down wait happens inside the child, so it extends the limit.
                extra = job.spec.get("cooldown_timeout_s", 0) if job.spec.get("cooldown_c") else 0
                job.result = run_in_child(
                    job.contents,
                    job.spec,
                    self.timeout_s + float(extra),
                    self.memory_mb,
                    job.rounds,
                )
                # When the device was busy with this file (clients check no overlap).
                job.result["measured_from"], job.result["measured_until"] = began, time.time()
            except JobFailed as exc:
                job.error = exc
            except Exception as exc:  # noqa: BLE001 - the agent must keep serving
                job.error = JobFailed(f"agent error: {type(exc).__name__}: {exc}", 500)
            finally:
                with self._lock:
                    self._pending -= 1
                job.done.set()

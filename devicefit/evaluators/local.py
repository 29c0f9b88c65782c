"""The local device: measure in a fresh child process on this machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

from devicefit.deploy.bench import child_env, write_model_files
from devicefit.deploy.sensors import Sensors
from devicefit.errors import TrialFailed
from devicefit.evaluators.base import (
    BenchmarkSpec,
    DeviceEvaluator,
    Measurement,
    Rounds,
    RoundsSpec,
)


class LocalEvaluator(DeviceEvaluator):
    """Runs ``devicefit.deploy.bench`` in a child process.

    A child process gives a clean peak-memory reading per model and keeps a
    runtime crash from taking the search down with it.
    """

    shares_host_cpu = True

    def __init__(self, name: str = "local") -> None:
        self.name = name

    def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
        payload = {k: v for k, v in spec.to_dict().items() if k != "timeout_s"}
        began = time.time()
        result = _run_bench([tflite], payload, spec.timeout_s, rounds=False)
        measurement = Measurement.from_dict(result)
        measurement.node = platform.node()
        measurement.measured_from, measurement.measured_until = began, time.time()
        return measurement

    def measure_rounds(self, files: list[bytes], spec: RoundsSpec) -> Rounds:
        """All files loaded in one child process, interleaved there (deploy/bench.py).

        Args:
            files: the TFLite files' bytes.
            spec: the rounds to run; ``timeout_s`` bounds the child process.

        Returns:
            The child's rounds, with this host's name as their node.

        Raises:
            TrialFailed: the child timed out, exited with an error or printed no result.
        """
        payload = {k: v for k, v in spec.to_dict().items() if k != "timeout_s"}
        rounds = Rounds.from_dict(_run_bench(files, payload, spec.timeout_s, rounds=True))
        rounds.node = platform.node()
        return rounds

    def describe(self) -> dict[str, Any]:
        """This machine: host, architecture, CPU count and processor, readable sensors.

        Returns:
            The facts, with ``sensors``: each sensor's name -> None when it can be read,
            else why not.
        """
        return {
            "name": self.name,
            "spec": "local",
            "host": platform.node(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "sensors": Sensors().available(),
        }


def _run_bench(
    files: list[bytes], payload: dict[str, Any], timeout_s: float, rounds: bool
) -> dict[str, Any]:
    """``devicefit.deploy.bench`` in a child process on ``files`` (a measurement of one, or
    paired rounds); its JSON result."""
    with tempfile.TemporaryDirectory(prefix="devicefit-bench-") as folder:
        paths = write_model_files(folder, files)
        mode = ["--rounds"] if rounds else []
        try:
            done = subprocess.run(
                [sys.executable, "-m", "devicefit.deploy.bench", *mode, *paths]
                + [json.dumps(payload)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=child_env(),
            )
        except subprocess.TimeoutExpired as exc:
            raise TrialFailed(f"benchmark timed out after {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-3:]
        raise TrialFailed(f"benchmark process exited with {done.returncode}: {' / '.join(tail)}")
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise TrialFailed("benchmark process printed no result")
    return json.loads(lines[-1])

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

from devicefit.deploy.sensors import Sensors
from devicefit.errors import TrialFailed
from devicefit.evaluators.base import BenchmarkSpec, DeviceEvaluator, Measurement


class LocalEvaluator(DeviceEvaluator):
    """Runs ``devicefit.deploy.bench`` in a child process.

    A child process gives a clean peak-memory reading per model and keeps a
    runtime crash from taking the search down with it.
    """

    shares_host_cpu = True

    def __init__(self, name: str = "local") -> None:
        self.name = name

    def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
        with tempfile.TemporaryDirectory(prefix="devicefit-bench-") as folder:
            path = os.path.join(folder, "model.tflite")
            with open(path, "wb") as handle:
                handle.write(tflite)
            payload = json.dumps({k: v for k, v in spec.to_dict().items() if k != "timeout_s"})
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
            began = time.time()
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "devicefit.deploy.bench", path, payload],
                    capture_output=True,
                    text=True,
                    timeout=spec.timeout_s,
                    env=env,
                )
            except subprocess.TimeoutExpired as exc:
                raise TrialFailed(f"benchmark timed out after {spec.timeout_s:.0f} s") from exc
        if done.returncode != 0:
            tail = (done.stderr or "").strip().splitlines()[-3:]
            raise TrialFailed(
                f"benchmark process exited with {done.returncode}: {' / '.join(tail)}"
            )
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise TrialFailed("benchmark process printed no result")
        measurement = Measurement.from_dict(json.loads(lines[-1]))
        measurement.node = platform.node()
        measurement.measured_from, measurement.measured_until = began, time.time()
        return measurement

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": "local",
            "host": platform.node(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "sensors": Sensors().available(),
        }

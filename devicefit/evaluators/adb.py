"""``adb:SERIAL``: an Android device over adb, measured by TensorFlow Lite's ``benchmark_model``.

Spec: ``adb:SERIAL[?benchmark_model=DEVICE_PATH&adb=HOST_PATH]``. The user pushes
the official ``benchmark_model`` binary for the phone's ABI once (default
``/data/local/tmp/benchmark_model``); each measurement pushes the file under a
name devicefit makes up, runs the binary with the spec's runs, seconds, warm-up
and threads, parses its statistics, and removes the file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from devicefit.errors import DeviceUnavailable, TrialFailed, UsageError
from devicefit.evaluators.base import (
    BenchmarkSpec,
    DeviceEvaluator,
    Measurement,
    Rounds,
    RoundsSpec,
)
from devicefit.evaluators.benchmark_model_output import (
    BenchmarkOutputError,
    parse_benchmark_model,
)
from devicefit.evaluators.op_profile_output import parse_op_profile, profile_rows

DEFAULT_BINARY = "/data/local/tmp/benchmark_model"
REMOTE_DIR = "/data/local/tmp"
# adb's words for a phone that is not there (or not ours to use).
GONE = ("device '", "offline", "unauthorized", "no devices", "still connecting")


class AdbEvaluator(DeviceEvaluator):
    def __init__(self, spec: str, name: str | None = None) -> None:
        body = spec.split(":", 1)[1]
        serial, _, query = body.partition("?")
        options = dict(parse_qsl(query))
        unknown = set(options) - {"benchmark_model", "adb"}
        if unknown:
            raise UsageError(f"--device {spec!r}: unknown option(s) {', '.join(sorted(unknown))}")
        self.serial = serial
        self.name = name or f"adb:{serial}"
        self.binary = options.get("benchmark_model", DEFAULT_BINARY)
        self.adb = options.get("adb") or shutil.which("adb") or "adb"

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                [self.adb, "-s", self.serial, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except FileNotFoundError:
            raise DeviceUnavailable(f"{self.name}: adb not found ({self.adb})") from None
        except subprocess.TimeoutExpired:
            raise DeviceUnavailable(f"{self.name}: adb {args[0]} timed out") from None
        said = done.stderr.lower()  # adb's own errors; a shell command's go to stdout
        if done.returncode != 0 and any(word in said for word in GONE):
            raise DeviceUnavailable(f"{self.name}: {(done.stderr or done.stdout).strip()}")
        return done

    def ping(self) -> None:
        state = self._run("get-state", timeout=10).stdout.strip()
        if state != "device":
            raise DeviceUnavailable(f"{self.name}: adb state is {state or 'unknown'}")

    def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
        (remote,) = self._push([tflite])
        try:
            before = self._temperature()
            began = time.time()
            stats = self._benchmark(remote, spec)
            until = time.time()
            after = self._temperature()
            profile = self._op_profile(remote, spec) if spec.op_profile_runs > 0 else None
        finally:
            self._remove([remote])
        measurement = self._measurement(stats, spec, before, after, began, until)
        if profile is not None:
            measurement.op_profile, reason = profile
            if reason is not None:
                measurement.unavailable["op_profile"] = reason
        return measurement

    def measure_rounds(self, files: list[bytes], spec: RoundsSpec) -> Rounds:
        """Each file pushed once; every round runs benchmark_model on each in turn."""
        remotes = self._push(files)
        blocks: list[list[float]] = [[] for _ in files]
        try:
            for round_index in range(spec.rounds):
                for offset in range(len(files)):
                    which = (round_index + offset) % len(files)
                    stats = self._benchmark(remotes[which], spec.block_spec())
                    if stats["median_ms"] is None:
                        raise DeviceUnavailable(f"{self.name}: {self.binary} prints no median")
                    blocks[which].append(stats["median_ms"])
        finally:
            self._remove(remotes)
        return Rounds(
            blocks,
            spec.threads,
            device=self.name,
            node=f"adb:{self.serial}",
            unavailable={"steal_pct": "not read on Android", "cores": "not pinned over adb"},
        )

    def _push(self, files: list[bytes]) -> list[str]:
        remotes: list[str] = []
        with tempfile.TemporaryDirectory(prefix="devicefit-adb-") as folder:
            for content in files:
                remote = f"{REMOTE_DIR}/devicefit-{uuid.uuid4().hex}.tflite"
                local = os.path.join(folder, "model.tflite")
                with open(local, "wb") as handle:
                    handle.write(content)
                pushed = self._run("push", local, remote, timeout=120)
                if pushed.returncode != 0:
                    self._remove(remotes)
                    raise DeviceUnavailable(
                        f"{self.name}: adb push failed: {pushed.stderr.strip()}"
                    )
                remotes.append(remote)
        return remotes

    def _remove(self, remotes: list[str]) -> None:
        if remotes:
            self._run("shell", "rm", "-f", *remotes, timeout=30)

    def _op_profile(self, remote: str, spec: BenchmarkSpec) -> tuple[dict | None, str | None]:
        """A run of its own with ``--enable_op_profiling`` (profiling slows the runs it
        times, so never the measurement's): the per-op table, as rows of
        ``deploy/op_profiler.py``'s form."""
        try:
            done = self._run(
                "shell",
                self.binary,
                f"--graph={remote}",
                f"--num_threads={spec.threads}",
                f"--num_runs={spec.op_profile_runs}",
                f"--warmup_runs={spec.warmup}",
                "--enable_op_profiling=true",
                timeout=spec.timeout_s,
            )
        except (DeviceUnavailable, TrialFailed) as exc:  # the measurement itself stands
            return None, f"benchmark_model --enable_op_profiling: {exc}"
        output = done.stdout + done.stderr
        try:
            nodes = parse_op_profile(output)
            stats = parse_benchmark_model(output)
        except BenchmarkOutputError as exc:
            return None, f"benchmark_model --enable_op_profiling: {exc}"
        if stats["mean_ms"] is None:
            return None, "benchmark_model --enable_op_profiling printed no run time"
        # benchmark_model may run more than asked (its --min_secs): the count it printed.
        runs = stats["count"] or spec.op_profile_runs
        return {"ops": profile_rows(nodes), "run_ms": stats["mean_ms"], "runs": runs}, None

    def _benchmark(self, remote: str, spec: BenchmarkSpec) -> dict[str, Any]:
        """benchmark_model's statistics for a file already on the phone."""
        done = self._run(
            "shell",
            self.binary,
            f"--graph={remote}",
            f"--num_threads={spec.threads}",
            f"--num_runs={spec.min_runs}",
            f"--min_secs={spec.min_seconds}",
            f"--warmup_runs={spec.warmup}",
            f"--warmup_min_secs={spec.warmup_seconds}",
            "--report_peak_memory_footprint=true",
            timeout=spec.timeout_s,
        )
        output = done.stdout + done.stderr
        if "not found" in output and self.binary in output:
            raise DeviceUnavailable(f"{self.name}: no benchmark_model at {self.binary}")
        try:
            return parse_benchmark_model(output)
        except BenchmarkOutputError:
            tail = " / ".join(output.strip().splitlines()[-3:])
            raise TrialFailed(f"{self.name}: benchmark_model failed on the model: {tail}") from None

    def _measurement(
        self,
        stats: dict[str, Any],
        spec: BenchmarkSpec,
        before: float | None,
        after: float | None,
        began: float,
        until: float,
    ) -> Measurement:
        if stats["median_ms"] is None or stats["count"] is None:
            # Older builds print only the mean: a median must not be made up from it.
            raise DeviceUnavailable(
                f"{self.name}: {self.binary} prints no median (an old build); "
                "push a recent benchmark_model"
            )
        return Measurement(
            median_ms=stats["median_ms"],
            p90_ms=None,
            p95_ms=stats["p95_ms"],
            min_ms=stats["min_ms"],
            std_ms=stats["std_ms"],
            count=stats["count"],
            threads=spec.threads,
            mean_ms=stats["mean_ms"],
            warmup_runs=stats.get("warmup_runs"),
            init_ms=stats.get("init_ms"),
            first_inference_ms=stats.get("first_inference_ms"),
            peak_memory_mb=stats.get("peak_memory_mb"),
            model_memory_mb=stats.get("model_memory_mb"),
            runtime=f"benchmark_model ({self.binary})",
            temperature_before_c=before,
            temperature_after_c=after,
            device=self.name,
            node=f"adb:{self.serial}",
            measured_from=began,
            measured_until=until,
            unavailable=_unavailable(stats, before, after),
        )

    def _temperature(self) -> float | None:
        done = self._run("shell", "cat /sys/class/thermal/thermal_zone*/temp", timeout=10)
        temps = []
        for word in done.stdout.split():
            try:
                value = float(word)
            except ValueError:
                continue
            temps.append(value / 1000.0 if abs(value) > 200 else value)
        return max(temps) if temps else None

    def describe(self) -> dict[str, Any]:
        def prop(key: str) -> str:
            return self._run("shell", "getprop", key, timeout=10).stdout.strip()

        self.ping()
        return {
            "name": self.name,
            "spec": f"adb:{self.serial}",
            "host": prop("ro.product.model") or self.serial,
            "cpu": prop("ro.soc.model") or prop("ro.board.platform"),
            "os": f"Android {prop('ro.build.version.release')}",
            "runtime": f"benchmark_model ({self.binary})",
            "sensors": {
                "energy": "the adb evaluator does not read the battery gauge",
                "temperature": None if self._temperature() is not None else "no thermal zone",
                "cpu_freq": "not read over adb",
            },
        }


def _unavailable(
    stats: dict[str, Any], before: float | None, after: float | None
) -> dict[str, str]:
    """Why each field benchmark_model over adb cannot fill is None."""
    unavailable = {
        "p90_ms": "benchmark_model reports p5/median/p95, not p90",
        "wall_s": "benchmark_model does not print how long its timed runs took",
        "energy_mj": "the adb evaluator does not read the battery gauge",
        "median_low_ms": "benchmark_model prints no run times to bound its median with",
        "median_high_ms": "benchmark_model prints no run times to bound its median with",
        "cores": "benchmark_model is not pinned over adb",
        "steal_pct": "the host load is not read on Android",
    }
    if stats.get("peak_memory_mb") is None:
        unavailable["peak_memory_mb"] = "benchmark_model printed no periodic peak"
    for key, value in (("temperature_before_c", before), ("temperature_after_c", after)):
        if value is None:
            unavailable[key] = "no readable /sys/class/thermal zone over adb"
    return unavailable

"""The measuring loop, run in a fresh process on the device.

Usage: python -m devicefit.deploy.bench MODEL.tflite '{"threads": 1, ...}'
prints one JSON object. Only the stdlib, numpy and a LiteRT runtime are used,
so the same loop runs on a Raspberry Pi agent and in the host's child process.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

import numpy as np

from devicefit.deploy.runtime import interpreter_class
from devicefit.deploy.sensors import Reading, Sensors

DEFAULT_SPEC: dict[str, Any] = {
    "threads": 1,
    "warmup": 5,
    "warmup_seconds": 0.5,
    "min_runs": 50,
    "min_seconds": 1.0,
    "cooldown_c": None,  # wait until the hottest thermal zone is at or under this
    "cooldown_timeout_s": 300.0,
}


# The agent passes its memory limit (MB) to the measuring process in this variable.
MEMORY_ENV = "DEVICEFIT_MEMORY_MB"


def proc_status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM, ...) in MB; None off Linux."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    VmHWM is reset by exec; ru_maxrss is not (it keeps the forking parent's peak,
    hundreds of MB when the parent holds TensorFlow), so it is only the fallback.
    """
    peak = proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0  # KiB vs bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _random_inputs(interp: Any, rng: np.random.Generator) -> None:
    for detail in interp.get_input_details():
        shape, dtype = detail["shape"], detail["dtype"]
        if np.issubdtype(dtype, np.floating):
            value = rng.random(shape, dtype=np.float32).astype(dtype)
        else:
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        interp.set_tensor(detail["index"], value)


def benchmark(
    model_content: bytes, spec: dict[str, Any], sensors: Sensors | None = None
) -> dict[str, Any]:
    """Warm up, then invoke until both ``min_runs`` and ``min_seconds`` are reached.

    Energy is the counter's change over the timed runs only; temperature is read
    before the model loads and after the last run; readings a device cannot give
    are None, with the reason under ``unavailable``.
    """
    spec = {**DEFAULT_SPEC, **spec}
    sensors = sensors or Sensors()
    readings: dict[str, Reading] = {}
    if spec["cooldown_c"] is not None:
        readings["cooldown_s"] = sensors.cool_down(
            float(spec["cooldown_c"]), float(spec["cooldown_timeout_s"])
        )
    readings["temperature_before_c"] = sensors.temperature_c()
    cls, runtime = interpreter_class()
    rss_before = _rss_mb()
    start = time.perf_counter()
    interp = cls(model_content=model_content, num_threads=int(spec["threads"]))
    interp.allocate_tensors()
    init_ms = (time.perf_counter() - start) * 1000.0
    _random_inputs(interp, np.random.default_rng(0))
    start = time.perf_counter()
    interp.invoke()
    first_ms = (time.perf_counter() - start) * 1000.0
    # Warm up by count and by time: on a cold core (clock ramping, caches and pages
    # not yet touched) the first few hundred milliseconds run up to 40% slower.
    began = time.perf_counter()
    warm = 0
    while warm < int(spec["warmup"]) or time.perf_counter() - began < spec["warmup_seconds"]:
        interp.invoke()
        warm += 1
    times: list[float] = []
    energy_before = sensors.energy_uj()
    began = time.perf_counter()
    while len(times) < int(spec["min_runs"]) or time.perf_counter() - began < spec["min_seconds"]:
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1000.0)
    wall_s = time.perf_counter() - began
    energy = sensors.energy_between(energy_before, sensors.energy_uj())
    readings["energy_mj"] = energy
    readings["energy_per_inference_mj"] = Reading(
        None if energy.value is None else energy.value / len(times), energy.reason
    )
    readings["cpu_freq_mhz"] = sensors.cpu_freq_mhz()
    readings["temperature_after_c"] = sensors.temperature_c()
    arr = np.asarray(times)
    peak = _rss_mb()
    result = {
        "median_ms": float(np.median(arr)),
        "p90_ms": float(np.percentile(arr, 90)),
        "min_ms": float(arr.min()),
        "mean_ms": float(arr.mean()),
        "std_ms": float(arr.std()),
        "count": int(arr.size),
        "wall_s": wall_s,
        "threads": int(spec["threads"]),
        "warmup_runs": warm,
        "init_ms": init_ms,
        "first_inference_ms": first_ms,
        "peak_memory_mb": peak,
        "model_memory_mb": max(0.0, peak - rss_before),
        "runtime": runtime,
        "energy_source": energy.source,
    }
    result.update({name: r.value for name, r in readings.items()})
    result["unavailable"] = {
        name: r.reason or "not read" for name, r in readings.items() if r.value is None
    }
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    limit_mb = os.environ.get(MEMORY_ENV)
    if limit_mb:  # the agent's memory limit, applied before the model is loaded
        limit = int(limit_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with open(argv[0], "rb") as handle:
        content = handle.read()
    result = benchmark(content, json.loads(argv[1]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

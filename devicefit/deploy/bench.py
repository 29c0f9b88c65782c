"""The measuring loop, run in a fresh process on the device.

Usage: python -m devicefit.deploy.bench MODEL.tflite '{"threads": 1, ...}'
       python -m devicefit.deploy.bench --rounds A.tflite B.tflite ... '{"rounds": 30, ...}'
prints one JSON object. Only the stdlib, numpy and a LiteRT runtime are used,
so the same loop runs on a Raspberry Pi agent and in the host's child process.

A measurement runs on the cores it was asked for (pinned), times runs until the median's
95% interval is within ``target_ci`` of it (or ``max_seconds`` pass), and records what else
used the CPU meanwhile: steal time and other processes. When they took more than a little,
it measures again, up to ``max_remeasures`` times, and keeps the least disturbed attempt.

The timed runs are shared among ``placements`` loads of the file, one after another: where
an interpreter's buffers land in memory sets its speed for as long as it lives (on a 2-core
AMD EPYC VM, six loads of the digits float32 file in one process ran at 3.43-4.05 ms, each
with a tight interval), so a median over one load carries that load's luck and a median over
several averages it (benchmarks/README.md, "Placements"). The host's own drift over minutes
is not averaged by this; paired rounds cancel it where files are compared.

The measuring process runs with huge pages for its heap (``child_env``: glibc's malloc asks
for transparent huge pages). Which 4 KiB pages a load's buffers got was the larger part of
that luck: on the same VM, right after a search, the digits float32 file (a 16 MB Dense
head) measured alone at 2.79-3.08 ms over five runs with 4 KiB pages and at 2.53-2.62 ms
with huge pages (52 MB of the process in them), the speed it also had during the search.
With 2 MB pages the weights span a few TLB entries, not thousands, and a guest's page walks
(costly under a hypervisor) no longer depend on where its pages landed. The amount in huge
pages is recorded with each measurement (``huge_pages_mb``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from devicefit.deploy.host_load import HostLoad, load_between, read_counters
from devicefit.deploy.intervals import median_interval, relative_half_width
from devicefit.deploy.op_profiler import profile_in_child
from devicefit.deploy.runtime import interpreter_class
from devicefit.deploy.sensors import Reading, Sensors

DEFAULT_SPEC: dict[str, Any] = {
    "threads": 1,
    "warmup": 5,
    "warmup_seconds": 0.5,
    "min_runs": 50,
    "min_seconds": 1.0,
    "target_ci": 0.02,  # stop once the median's 95% interval is within +-2% of it ...
    "max_seconds": 10.0,  # ... or once the timed runs took this long
    "pin": True,  # run on ``threads`` fixed cores
    "max_remeasures": 2,  # measure again when disturbed, at most this often
    "cooldown_c": None,  # wait until the hottest thermal zone is at or under this
    "cooldown_timeout_s": 300.0,
    "op_profile_runs": 0,  # then profile this many runs op by op (0: none)
    "placements": 4,  # loads of the file the timed runs are shared among (see above)
}
# glibc >= 2.35: malloc marks its arenas and large blocks for transparent huge pages (needs
# /sys/kernel/mm/transparent_hugepage/enabled at "madvise" or "always"). Read at process
# start, so it is set by whoever starts the measuring process (``child_env``).
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def child_env() -> dict[str, str]:
    """The environment to start a measuring process in: quiet TensorFlow logs, and malloc
    on huge pages (the module's docstring says why); other glibc tunables are kept."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    kept = [
        t
        for t in env.get("GLIBC_TUNABLES", "").split(":")
        if t and not t.startswith("glibc.malloc.hugetlb=")
    ]
    env["GLIBC_TUNABLES"] = ":".join([*kept, HUGE_PAGES_TUNABLE])
    return env


def huge_pages_mb() -> Reading:
    """How much of this process's memory is in transparent huge pages, or why unknown."""
    try:
        with open("/proc/self/smaps_rollup") as handle:
            rollup = handle.read()
    except OSError:
        return Reading(None, "no /proc/self/smaps_rollup (not Linux, or a kernel before 4.14)")
    try:
        with open(THP_SETTING) as handle:
            if "[never]" in handle.read():
                return Reading(None, f"transparent huge pages are off ({THP_SETTING}: never)")
    except OSError:
        return Reading(None, f"no transparent huge pages in this kernel (no {THP_SETTING})")
    for line in rollup.splitlines():
        if line.startswith("AnonHugePages:"):
            return Reading(int(line.split()[1]) / 1024.0)
    return Reading(None, "no AnonHugePages line in /proc/self/smaps_rollup")


# Beyond these a measurement was disturbed and is taken again: the hypervisor took more than
# 2% of the measuring cores, or other processes ran on them more than 5% of the time. Other
# processes on other cores are recorded (other_load_cpus), not a reason to measure again: on
# a 2-core VM a process saturating the other core moved a median by under 1%.
MAX_STEAL_PCT = 2.0
MAX_CORE_SHARED_PCT = 5.0

# The agent passes its memory limit (MB) to the measuring process in this variable.
MEMORY_ENV = "DEVICEFIT_MEMORY_MB"


def write_model_files(folder: str, contents: list[bytes]) -> list[str]:
    """``contents`` written as model-0.tflite, model-1.tflite, ... in ``folder`` (fixed
    names: nothing a client sends becomes part of a path); their paths, in order."""
    paths = []
    for index, content in enumerate(contents):
        paths.append(os.path.join(folder, f"model-{index}.tflite"))
        with open(paths[-1], "wb") as handle:
            handle.write(content)
    return paths


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
        elif not detail["quantization"][0]:
            # An integer input without a scale holds ids (an Embedding's, a lookup's):
            # id 0 exists in every table, where a random id may be out of range.
            value = np.zeros(shape, dtype)
        else:
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        interp.set_tensor(detail["index"], value)


def pin_cores(threads: int, pin: bool = True) -> list[int] | None:
    """Run this process on ``threads`` fixed cores (the last ones it may use: the first
    usually takes more interrupts); None where it cannot be pinned."""
    if not pin or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if threads >= len(allowed):
        return None
    cores = allowed[-threads:]
    os.sched_setaffinity(0, cores)
    return cores


def disturbed(load: HostLoad | None) -> bool:
    return load is not None and (
        load.steal_pct > MAX_STEAL_PCT or load.core_shared_pct > MAX_CORE_SHARED_PCT
    )


@dataclass
class _Attempt:
    times: np.ndarray
    wall_s: float
    load: HostLoad | None
    energy: Reading
    invokes: int  # every run in the energy's window: timed, and the later loads' warm-ups
    medians: list[float]  # each load's own median

    @property
    def disturbance(self) -> float:
        if self.load is None:
            return 0.0
        return self.load.steal_pct + self.load.core_shared_pct


def timed_runs(interp: Any, spec: dict[str, Any]) -> tuple[np.ndarray, float]:
    """Invoke until ``min_runs`` and ``min_seconds`` are reached and the median's interval is
    within ``target_ci``, or ``max_seconds`` passed; run times in ms and the wall time."""
    times: list[float] = []
    target, cap = float(spec["target_ci"]), float(spec["max_seconds"])
    min_runs, min_seconds = int(spec["min_runs"]), float(spec["min_seconds"])
    check_at = min_runs
    began = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        interp.invoke()
        t1 = time.perf_counter()
        times.append((t1 - t0) * 1000.0)
        elapsed = t1 - began
        if len(times) < min_runs or elapsed < min_seconds:
            continue
        if elapsed >= cap:
            break
        if len(times) >= check_at:  # checked as the sample grows by a quarter
            if relative_half_width(times) <= target:
                break
            check_at = len(times) + max(1, len(times) // 4)
    return np.asarray(times), time.perf_counter() - began


def _load(cls: Any, model_content: bytes, spec: dict[str, Any]) -> Any:
    interp = cls(model_content=model_content, num_threads=int(spec["threads"]))
    interp.allocate_tensors()
    return interp


def _timed_placements(
    first: Any, cls: Any, model_content: bytes, spec: dict[str, Any]
) -> tuple[np.ndarray, float, int, list[float]]:
    """``timed_runs`` shared among ``placements`` loads: ``first`` (warm already), then a
    fresh load each, warmed for its share of the warm-up and dropped after its runs (the next
    load lands elsewhere in memory). The runs' times (ms), their wall time, every run made
    meanwhile, and each load's median."""
    k = max(1, int(spec["placements"]))
    share = {
        **spec,
        "min_runs": -(-int(spec["min_runs"]) // k),
        "min_seconds": float(spec["min_seconds"]) / k,
        "max_seconds": float(spec["max_seconds"]) / k,
    }
    parts, medians, wall_s, invokes = [], [], 0.0, 0
    for n in range(k):
        interp = first
        if n:
            interp = _load(cls, model_content, spec)
            _random_inputs(interp, np.random.default_rng(0))
            invokes += warm_up(interp, int(spec["warmup"]), float(spec["warmup_seconds"]) / k)
        times, seconds = timed_runs(interp, share)
        parts.append(times)
        medians.append(float(np.median(times)))
        wall_s += seconds
        invokes += times.size
        del interp
    return np.concatenate(parts), wall_s, invokes, medians


def benchmark(
    model_content: bytes,
    spec: dict[str, Any],
    sensors: Sensors | None = None,
    cores: list[int] | None = None,
) -> dict[str, Any]:
    """Warm up, then time runs (see ``timed_runs``), again while the host was disturbed.
    ``cores``: the cores this process was pinned to (by ``main``; None: not pinned).

    Energy is the counter's change over the kept attempt (its timed runs and the later
    loads' warm-up runs, each counted as an inference); temperature is read
    before the model loads and after the last run; readings a device cannot give are None,
    with the reason under ``unavailable``.
    """
    spec = {**DEFAULT_SPEC, **spec}
    sensors = sensors or Sensors()
    readings = _readings_before(sensors, spec)
    first = _first_load(model_content, spec)
    readings["huge_pages_mb"] = huge_pages_mb()
    attempts = _attempts(first, model_content, spec, sensors, cores)
    kept = min(attempts, key=lambda a: a.disturbance)
    readings.update(_readings_after(kept, sensors))
    result = _result_fields(first, attempts, kept, spec, cores)
    _add_readings(result, readings, kept.load, cores)
    if int(spec["op_profile_runs"]) > 0:
        # Warm, on the same cores, right after the timed runs; LiteRT's compiled model, not
        # the interpreter timed above, so its run time is reported beside the median, not as
        # it. In a child process: a native failure there must not cost this measurement.
        _add_op_profile(result, model_content, spec)
    return result


@dataclass
class _FirstLoad:
    """The file's first load, warm, and what loading and first running it cost."""

    interp: Any
    cls: Any
    runtime: str
    init_ms: float
    first_inference_ms: float
    warmup_runs: int
    rss_before_mb: float
    peak_mb: float


def _readings_before(sensors: Sensors, spec: dict[str, Any]) -> dict[str, Reading]:
    """The cool-down wait (when asked for) and the temperature before the model loads."""
    readings: dict[str, Reading] = {}
    if spec["cooldown_c"] is not None:
        readings["cooldown_s"] = sensors.cool_down(
            float(spec["cooldown_c"]), float(spec["cooldown_timeout_s"])
        )
    readings["temperature_before_c"] = sensors.temperature_c()
    return readings


def _first_load(model_content: bytes, spec: dict[str, Any]) -> _FirstLoad:
    """Load the file, time the loading and the first run, and warm it up."""
    cls, runtime = interpreter_class()
    rss_before = _rss_mb()
    start = time.perf_counter()
    interp = _load(cls, model_content, spec)
    init_ms = (time.perf_counter() - start) * 1000.0  # loading alone, as before placements
    _random_inputs(interp, np.random.default_rng(0))
    start = time.perf_counter()
    interp.invoke()
    first_ms = (time.perf_counter() - start) * 1000.0
    warm = warm_up(interp, int(spec["warmup"]), float(spec["warmup_seconds"]))
    # Memory of the first load alone: the later ones replace it, one at a time.
    peak = _rss_mb()
    return _FirstLoad(interp, cls, runtime, init_ms, first_ms, warm, rss_before, peak)


def _attempts(
    first: _FirstLoad,
    model_content: bytes,
    spec: dict[str, Any],
    sensors: Sensors,
    cores: list[int] | None,
) -> list[_Attempt]:
    """The timed runs, taken again while the host disturbed them (``max_remeasures`` times
    at most); every attempt, with the host load and energy over it."""
    attempts: list[_Attempt] = []
    while True:
        energy_before, counters = sensors.energy_uj(), read_counters()
        times, wall_s, invokes, medians = _timed_placements(
            first.interp, first.cls, model_content, spec
        )
        load = load_between(counters, read_counters(), set(cores) if cores else None)
        energy = sensors.energy_between(energy_before, sensors.energy_uj())
        attempts.append(_Attempt(times, wall_s, load, energy, invokes, medians))
        if not disturbed(load) or len(attempts) > int(spec["max_remeasures"]):
            return attempts


def _readings_after(kept: _Attempt, sensors: Sensors) -> dict[str, Reading]:
    """The kept attempt's energy, then the clock and temperature after the last run."""
    return {
        "energy_mj": kept.energy,
        "energy_per_inference_mj": Reading(
            None if kept.energy.value is None else kept.energy.value / kept.invokes,
            kept.energy.reason,
        ),
        "cpu_freq_mhz": sensors.cpu_freq_mhz(),
        "temperature_after_c": sensors.temperature_c(),
    }


def _result_fields(
    first: _FirstLoad,
    attempts: list[_Attempt],
    kept: _Attempt,
    spec: dict[str, Any],
    cores: list[int] | None,
) -> dict[str, Any]:
    """The measurement's fields from its run times, loading and host load (no readings)."""
    arr = kept.times
    median, low, high = median_interval(arr)
    return {
        "median_ms": median,
        "median_low_ms": low,
        "median_high_ms": high,
        "p90_ms": float(np.percentile(arr, 90)),
        "min_ms": float(arr.min()),
        "mean_ms": float(arr.mean()),
        "std_ms": float(arr.std()),
        "count": int(arr.size),
        "wall_s": kept.wall_s,
        "threads": int(spec["threads"]),
        "cores": cores,
        "warmup_runs": first.warmup_runs,
        "init_ms": first.init_ms,
        "first_inference_ms": first.first_inference_ms,
        "peak_memory_mb": first.peak_mb,
        "model_memory_mb": max(0.0, first.peak_mb - first.rss_before_mb),
        "runtime": first.runtime,
        "energy_source": kept.energy.source,
        "remeasured": len(attempts) - 1,
        "placement_medians_ms": kept.medians,
        "disturbed": disturbed(kept.load),
        **_load_fields(kept.load),
    }


def _add_readings(
    result: dict[str, Any],
    readings: dict[str, Reading],
    load: HostLoad | None,
    cores: list[int] | None,
) -> None:
    """Add the sensor readings to ``result``, and under ``unavailable`` why any is missing."""
    result.update({name: r.value for name, r in readings.items()})
    result["unavailable"] = {
        name: r.reason or "not read" for name, r in readings.items() if r.value is None
    }
    if load is None:
        result["unavailable"].update(dict.fromkeys(LOAD_FIELDS, "no /proc/stat on this system"))
    if cores is None:
        result["unavailable"]["cores"] = "not pinned (asked for every core, or not Linux)"


def _add_op_profile(result: dict[str, Any], model_content: bytes, spec: dict[str, Any]) -> None:
    """Add the op-by-op profile of ``op_profile_runs`` runs, or why there is none."""
    profile = profile_in_child(model_content, int(spec["threads"]), int(spec["op_profile_runs"]))
    if "unavailable" in profile:
        result["op_profile"] = None
        result["unavailable"]["op_profile"] = profile["unavailable"]
    else:
        result["op_profile"] = profile


LOAD_FIELDS = ("steal_pct", "core_shared_pct", "other_load_cpus")


def _load_fields(load: HostLoad | None) -> Mapping[str, float | None]:
    return load.to_dict() if load is not None else dict.fromkeys(LOAD_FIELDS)


def warm_up(interp: Any, count: int, seconds: float) -> int:
    """Warm up by count and by time: on a cold core (clock ramping, caches and pages not
    yet touched) the first few hundred milliseconds run up to 40% slower."""
    began = time.perf_counter()
    warm = 0
    while warm < count or time.perf_counter() - began < seconds:
        interp.invoke()
        warm += 1
    return warm


ROUNDS_SPEC: dict[str, Any] = {
    "threads": 1,
    "rounds": 30,
    "block_seconds": 0.1,  # timed runs of one file in one round ...
    "block_min_runs": 5,  # ... and at least this many
    "block_warmup": 3,  # untimed runs first: the other files evicted this one's caches
    "pin": True,
}


def interleaved(
    contents: list[bytes], spec: dict[str, Any], cores: list[int] | None = None
) -> dict[str, Any]:
    """Paired rounds. In each round every file is loaded afresh and timed for a short
    block, the order rotating from round to round. The host's slow drift hits every file
    of a round alike, so per-round ratios compare files where measurements minutes apart
    cannot. Loading afresh each round (in alternating order) matters as much: where an
    interpreter's buffers land in memory changes its speed by up to 2% for as long as it
    lives (measured on the digits float32 file), so two loads of the same file differ
    steadily; with a load per round that becomes round-to-round noise, which the interval
    covers. Returns each file's block medians (ms), round by round."""
    spec = {**ROUNDS_SPEC, **spec}
    cls, runtime = interpreter_class()
    threads = int(spec["threads"])
    wanted = int(spec["rounds"])
    blocks: list[list[float]] = [[] for _ in contents]
    counters = read_counters()
    round_index = redone = 0
    # A round another process or the hypervisor took the measuring core from is measured
    # again (up to half as many rounds more): one disturbed block skews that round's ratio.
    while round_index < wanted:
        medians, load = _timed_round(cls, contents, round_index, spec, cores)
        if disturbed(load) and redone < wanted // 2:
            redone += 1
            continue
        for which, median in medians.items():
            blocks[which].append(median)
        round_index += 1
    load = load_between(counters, read_counters(), set(cores) if cores else None)
    return {
        "block_ms": blocks,
        "rounds": wanted,
        "rounds_redone": redone,
        "threads": threads,
        "cores": cores,
        "runtime": runtime,
        **_load_fields(load),
    }


def _timed_round(
    cls: Any,
    contents: list[bytes],
    round_index: int,
    spec: dict[str, Any],
    cores: list[int] | None,
) -> tuple[dict[int, float], HostLoad | None]:
    """One round: every file loaded afresh, then a block of each timed, starting with file
    ``round_index``; each file's block median and the host load over the blocks."""
    interps = _round_loads(cls, contents, round_index, int(spec["threads"]))
    before = read_counters()
    medians = {}
    for offset in range(len(contents)):
        which = (round_index + offset) % len(contents)
        medians[which] = _block_median(interps[which], spec)
    del interps  # freed before the next round loads again
    return medians, load_between(before, read_counters(), set(cores) if cores else None)


def _round_loads(cls: Any, contents: list[bytes], round_index: int, threads: int) -> dict[int, Any]:
    """Every file loaded and run once, in file order in even rounds and reversed in odd ones."""
    order = list(range(len(contents)))
    if round_index % 2:
        order.reverse()
    interps: dict[int, Any] = {}
    for which in order:
        interp = cls(model_content=contents[which], num_threads=threads)
        interp.allocate_tensors()
        _random_inputs(interp, np.random.default_rng(0))
        interp.invoke()  # the first run packs the weights
        interps[which] = interp
    return interps


def _block_median(interp: Any, spec: dict[str, Any]) -> float:
    """One block: untimed runs (the other files evicted this one's caches), then runs timed
    for ``block_seconds`` and at least ``block_min_runs``; their median in ms."""
    for _ in range(int(spec["block_warmup"])):
        interp.invoke()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < int(spec["block_min_runs"]) or time.perf_counter() - began < float(
        spec["block_seconds"]
    ):
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(times))


def main(argv: list[str]) -> int:
    rounds = bool(argv) and argv[0] == "--rounds"
    paths, spec_text = (argv[1:-1], argv[-1]) if rounds else (argv[:1], argv[-1] if argv else "")
    if (rounds and not paths) or (not rounds and len(argv) != 2):
        print(__doc__, file=sys.stderr)
        return 2
    limit_mb = os.environ.get(MEMORY_ENV)
    if limit_mb:  # the agent's memory limit, applied before the model is loaded
        limit = int(limit_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    contents = []
    for path in paths:
        with open(path, "rb") as handle:
            contents.append(handle.read())
    spec = json.loads(spec_text)
    # Pinned here, in the measuring process only: callers of benchmark() in-process keep
    # their own affinity.
    cores = pin_cores(int(spec.get("threads", 1)), bool(spec.get("pin", True)))
    if rounds:
        result = interleaved(contents, spec, cores)
    else:
        result = benchmark(contents[0], spec, cores=cores)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Read the statistics that TensorFlow Lite's ``benchmark_model`` prints.

Its output changed over the years; this reads every published form:
  [INFO: ]count=50 first=.. curr=.. min=.. max=.. avg=.. std=..[ p5=.. median=.. p95=..]
  [INFO: ]Inference timings in us: Init: .., First inference: .., Warmup (avg): ..,
           Inference (avg): ..
  [INFO: ]Memory footprint delta from the start of the tool (MB): init=.. overall=..
  Peak memory footprint (MB): init=.. overall=..                  (older builds)
  [INFO: ]Overall peak memory footprint (MB) via periodic monitoring: ..
Lines may carry a logcat prefix ("07-08 15:34:26.201 I/tflite  ( 5395): ..." or
"... tflite  : ..."). Times are microseconds; numbers may be in 1.2e+06 form.
"""

from __future__ import annotations

import re
from typing import Any

_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_STATS = re.compile(rf"\bcount=(\d+)((?:\s+\w+={_NUMBER})+)")
_PAIR = re.compile(rf"(\w+)=({_NUMBER})")
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: ({_NUMBER}), First inference: ({_NUMBER}), "
    rf"Warmup \(avg\): ({_NUMBER}), Inference \(avg\): ({_NUMBER})"
)
_DELTA = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
    rf"init=({_NUMBER}) overall=({_NUMBER})"
)
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUMBER})")


class BenchmarkOutputError(ValueError):
    """The text holds no benchmark_model statistics."""


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """Statistics of the timed runs, in milliseconds and megabytes; None where the
    output does not say (older builds print no median or percentiles).

    Args:
        text: what ``benchmark_model`` printed (its output, or logcat lines).

    Returns:
        ``count``, ``min_ms``, ``max_ms``, ``mean_ms``, ``std_ms``, ``median_ms``,
        ``p5_ms`` and ``p95_ms`` always; ``warmup_runs``, ``init_ms``,
        ``first_inference_ms``, ``init_memory_mb``, ``model_memory_mb`` and
        ``peak_memory_mb`` only where printed.

    Raises:
        BenchmarkOutputError: the text has neither a statistics line nor an
            "Inference timings" line (the tool failed, or this is not its output).
    """
    stats = [m for m in _STATS.finditer(text)]
    timings = _TIMINGS.search(text)
    if not stats and not timings:
        raise BenchmarkOutputError("no 'count=' statistics and no 'Inference timings' line")
    out: dict[str, Any] = dict.fromkeys(
        ("count", "min_ms", "max_ms", "mean_ms", "std_ms", "median_ms", "p5_ms", "p95_ms")
    )
    if stats:
        _read_statistics(out, stats)
    if timings:
        init, first, _warm, mean = (float(g) for g in timings.groups())
        out["init_ms"], out["first_inference_ms"] = init / 1000.0, first / 1000.0
        out["mean_ms"] = out["mean_ms"] if out["mean_ms"] is not None else mean / 1000.0
    _read_memory(out, text)
    return out


def _read_statistics(out: dict[str, Any], stats: list[re.Match[str]]) -> None:
    """Set ``out``'s count and ms statistics (and ``warmup_runs``) from the statistics lines."""
    # The last statistics line is the timed runs; the one before it is the warm-up.
    last = stats[-1]
    values = {k: float(v) for k, v in _PAIR.findall(last.group(2))}
    out["count"] = int(last.group(1))
    for key, name in (
        ("min", "min_ms"),
        ("max", "max_ms"),
        ("avg", "mean_ms"),
        ("std", "std_ms"),
        ("median", "median_ms"),
        ("p5", "p5_ms"),
        ("p95", "p95_ms"),
    ):
        if key in values:
            out[name] = values[key] / 1000.0
    if len(stats) >= 2:
        out["warmup_runs"] = int(stats[-2].group(1))


def _read_memory(out: dict[str, Any], text: str) -> None:
    """Set ``out``'s memory footprints (MB) from the last lines of ``text`` that print them."""
    deltas = _DELTA.findall(text)
    if deltas:
        init_mb, overall_mb = (float(v) for v in deltas[-1])
        out["init_memory_mb"], out["model_memory_mb"] = init_mb, overall_mb
    peak = _PEAK.findall(text)
    if peak:
        out["peak_memory_mb"] = float(peak[-1])

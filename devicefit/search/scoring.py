"""Scoring a built and measured candidate: what the study is told about it.

A pure function of the candidate, its measurements and the study's settings; the driver
sets the scores on the trial and tells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devicefit.evaluators.base import Measurement
from devicefit.evaluators.metrics import Metric
from devicefit.search import attrs
from devicefit.search.trial import TrialOutput
from devicefit.search.trial_metrics import TrialMetrics

# (file's sha256, device name, fresh median) -> (median over all its measurements, count)
Pooling = Callable[[str, str, float], tuple[float, int]]


class Unscored(Exception):
    """The candidate cannot be scored: a device gave no reading the study needs."""


@dataclass
class Scored:
    """The trial's objective values, its constraints (feasible when <= 0) and its record."""

    values: list[float]
    constraints: dict[str, float]
    metrics: TrialMetrics


def score_candidate(
    out: TrialOutput,
    measurements: dict[str, Measurement],
    info: dict[str, Any],
    metric: Metric,
    limits: dict[str, float],
    pooled: Pooling,
) -> Scored:
    """The objective values, constraints and stored record of a measured candidate.

    Args:
        out: the built candidate (its metric, size and file).
        measurements: device name -> its measurement, in the study's device order.
        info: the study's devicefit attributes ("objectives", "max_metric_drop",
            "reference_metric"; search/attrs.py).
        metric: the task metric, to compute the drop from the reference.
        limits: measurement field -> the most any device may show (device constraints).
        pooled: the median over every measurement of a file measured before.

    Returns:
        The values (metric, then each device objective), the constraints (the metric
        drop's key, then one per device limit) and the trial's record.

    Raises:
        Unscored: a device gave no reading an objective or a limit needs.
    """
    reference = info.get("reference_metric")
    drop = metric.drop(reference, out.metric) if reference is not None else 0.0
    values, pooled_medians = _objective_values(out, measurements, info["objectives"], pooled)
    constraints = {attrs.CONSTRAINT: drop - float(info["max_metric_drop"])}
    constraints.update(_limit_excess(measurements, limits))
    record = _record(out, drop, measurements, pooled_medians)
    return Scored([out.metric, *values], constraints, record)


def _record(
    out: TrialOutput,
    drop: float,
    measurements: dict[str, Measurement],
    pooled: dict[str, dict[str, Any]],
) -> TrialMetrics:
    """What the trial stores: the candidate's scores beside its measurements."""
    return TrialMetrics(
        metric=out.metric,
        metric_drop=drop,
        size_bytes=out.size_bytes,
        macs=out.macs,
        params=out.params,
        ops=out.ops,
        layer_macs=out.layer_macs,
        latency=measurements,
        notes=out.notes,
        timings_s=out.timings_s,
        built_on=out.node,
        worker_rss_mb=out.worker_rss_mb,
        tflite_sha256=out.tflite_sha256,
        same_as=out.same_as,
        pooled=pooled,
        paused_trials=out.paused_trials,
        finetune=out.finetune,
    )


def _objective_values(
    out: TrialOutput,
    measurements: dict[str, Measurement],
    objectives: list[dict[str, Any]],
    pooled: Pooling,
) -> tuple[list[float], dict[str, dict[str, Any]]]:
    """Each device objective's value, and the pooled medians of a file measured before."""
    values: list[float] = []
    pooled_medians: dict[str, dict[str, Any]] = {}
    for objective in objectives[1:]:
        device = objective.get("device") or next(iter(measurements))
        m, key = measurements[device], objective.get("field", "median_ms")
        value = getattr(m, key)
        if value is None:
            why = m.unavailable.get(key, "not reported")
            raise Unscored(f"{m.device} gave no {objective['name']}: {why}")
        if out.same_as is not None and key == "median_ms":
            # The same file measured again: told the median over all its measurements.
            value, count = pooled(out.tflite_sha256, device, float(value))
            pooled_medians[device] = {"median_ms": value, "measurements": count}
        values.append(float(value))
    return values, pooled_medians


def _limit_excess(
    measurements: dict[str, Measurement], limits: dict[str, float]
) -> dict[str, float]:
    """Measurement field -> the worst device's reading minus its limit."""
    excess = {}
    for key, limit in limits.items():
        readings = [getattr(m, key) for m in measurements.values()]
        if any(r is None for r in readings):  # a limit nobody can check is not met
            missing = [m.device for m in measurements.values() if getattr(m, key) is None]
            raise Unscored(f"{', '.join(map(str, missing))} gave no {key}")
        excess[key] = max(readings) - limit
    return excess

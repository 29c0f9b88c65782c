"""Hypervolume of a study's front: how much of objective space its feasible trials dominate.

The reference point says "no better than doing nothing": the task metric at the edge of
the metric-drop budget and, on every other objective, the float32 model's own value. A
trial contributes only where it beats the unmodified model, so the number grows exactly
when the search finds something worth shipping. Without a float32 trial (or budget), the
worst eligible value plus a tenth of the range stands in.

Values are handled as minimisation (maximised objectives negated); the volume is in the
product of the objectives' units, so it is comparable between studies only against one
reference point (``common_reference``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from devicefit.errors import UsageError
from devicefit.results.pareto import eligible, float32_baseline
from devicefit.results.records import StudyRecord, TrialRecord


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by ``points`` (minimisation) and bounded by ``reference``.

    Exact, by slicing along the last objective (HSO); fine for fronts of hundreds.
    Points not strictly better than the reference on every objective add nothing.

    Args:
        points: objective vectors in minimisation space, any order, dominated ones allowed.
        reference: the point bounding the volume, one value per objective.

    Returns:
        The volume, in the product of the objectives' units; 0.0 when no point beats the
        reference.
    """
    ref = [float(r) for r in reference]
    front: list[list[float]] = []
    for p in points:
        point = [float(x) for x in p]
        if all(x < r for x, r in zip(point, ref, strict=True)):
            front = _with(front, point) or front
    if len(ref) > 3 and len(front) > 30:
        fast = _wfg(front, ref)
        if fast is not None:
            return fast
    return _volume(front, ref)


def _wfg(front: list[list[float]], ref: list[float]) -> float | None:
    """Optuna's WFG implementation (numpy), several times faster on large fronts of many
    objectives (2000 trials, 5 objectives: 49 s of report writing with the sweep alone).
    It is not public API: if it moves, the sweep below gives the same number, slower."""
    try:
        import numpy as np
        from optuna._hypervolume import compute_hypervolume
    except ImportError:
        return None
    return float(compute_hypervolume(np.asarray(front), np.asarray(ref), assume_pareto=True))


def _volume(points: list[list[float]], ref: list[float]) -> float:
    if not points:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in points)
    if len(ref) == 2:
        total, best_y = 0.0, ref[1]
        for x, y in sorted(points):
            if y < best_y:
                total += (ref[0] - x) * (best_y - y)
                best_y = y
        return total
    # Sweep the last axis upwards: between two consecutive cuts, the slab's cross-section
    # is the (d-1)-volume of every point at or below the lower cut. Only the cross-section's
    # own non-dominated points matter; dropping the rest keeps the recursion small.
    ordered = sorted(points, key=lambda p: p[-1])
    total = 0.0
    section: list[list[float]] = []
    for i, point in enumerate(ordered):
        section = _with(section, point[:-1]) or section
        upper = ordered[i + 1][-1] if i + 1 < len(ordered) else ref[-1]
        if upper > point[-1]:
            total += _volume(section, ref[:-1]) * (upper - point[-1])
    return total


def _with(front: list[list[float]], point: list[float]) -> list[list[float]] | None:
    """``front`` with ``point`` added and what it dominates removed; None if some member
    already (weakly) dominates it, which leaves every volume as it was."""
    if any(_weakly_dominates(q, point) for q in front):
        return None
    return [q for q in front if not _weakly_dominates(point, q)] + [point]


def _weakly_dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True))


def as_minimised(record: StudyRecord, trial: TrialRecord) -> list[float]:
    """A trial's objective values in minimisation space (maximised objectives negated).

    Args:
        record: the study, for its objectives' order and directions.
        trial: a trial with a value for every objective.

    Returns:
        One value per objective, in the study's order.
    """
    return [
        -trial.values[o.name] if o.maximize else trial.values[o.name] for o in record.objectives
    ]


def reference_point(record: StudyRecord) -> list[float] | None:
    """The study's own reference (minimisation space); None before any eligible trial.

    Args:
        record: the study.

    Returns:
        The metric-drop budget's edge and the float32 trial's values where known, else the
        worst eligible value plus a tenth of the range; None before any eligible trial.
    """
    points = [as_minimised(record, t) for t in record.trials if eligible(record, t)]
    if not points:
        return None
    worst = [max(column) for column in zip(*points, strict=True)]
    best = [min(column) for column in zip(*points, strict=True)]
    # The fallback: nadir plus a tenth of the range (or of the value, for a flat objective).
    ref = [w + 0.1 * ((w - b) or abs(w) or 1.0) for w, b in zip(worst, best, strict=True)]
    base = float32_baseline(record)
    edge = metric_edge(record)
    if edge is not None:
        ref[0] = -edge if record.objectives[0].maximize else edge
    if base is not None and all(
        math.isfinite(base.values.get(o.name, math.nan)) for o in record.objectives
    ):
        for i, value in enumerate(as_minimised(record, base)[1:], start=1):
            ref[i] = value
    return ref


def metric_edge(record: StudyRecord) -> float | None:
    """The worst task metric a feasible trial may have.

    Args:
        record: the study, for its budget and reference metric.

    Returns:
        The reference metric (stored, else the float32 trial's) less the allowed drop (or
        plus it, for a lower-is-better metric); None without a reference or a budget.
    """
    base = float32_baseline(record)
    ref = record.reference_metric
    if ref is None and base is not None:
        ref = base.metric(record.objectives)
    if ref is None or record.max_metric_drop is None:
        return None
    drop = record.max_metric_drop
    return ref - drop if record.metric.higher_is_better else ref + drop


def study_hypervolume(record: StudyRecord, reference: Sequence[float] | None = None) -> float:
    """The hypervolume of the study's eligible trials (computed once per reference).

    Args:
        record: the study; the value is cached in ``record.cache``.
        reference: the point in the study's objective order; default its own
            ``reference_point``.

    Returns:
        The volume; 0.0 when there is no reference point (no eligible trial).
    """
    ref = reference if reference is not None else reference_point(record)
    if ref is None:
        return 0.0
    key = f"hypervolume {list(ref)}"
    if key not in record.cache:
        points = [as_minimised(record, t) for t in record.trials if eligible(record, t)]
        record.cache[key] = hypervolume(points, ref)
    return record.cache[key]


@dataclass(frozen=True)
class HypervolumeStep:
    trial: int  # the trial whose completion this point follows
    completed: int  # completed trials so far
    elapsed_s: float  # since the first trial started
    hypervolume: float


def hypervolume_history(
    record: StudyRecord, reference: Sequence[float] | None = None, max_points: int = 60
) -> list[HypervolumeStep]:
    """The front's hypervolume after each completed trial, in order of completion.

    Long studies are sampled at ``max_points`` evenly spaced completions (the last always
    included): with many objectives one exact volume of a large front takes a second.

    Args:
        record: the study.
        reference: the point in the study's objective order; default its own
            ``reference_point``.
        max_points: at most this many steps.

    Returns:
        The steps, each with its trial, the completions so far, seconds since the first
        trial started, and the volume (0.0 throughout without a reference point).
    """
    ref = reference if reference is not None else reference_point(record)
    done = [t for t in record.trials if t.complete and t.datetime_complete is not None]
    done.sort(key=lambda t: (t.datetime_complete, t.number))
    starts = [t.datetime_start for t in record.trials if t.datetime_start is not None]
    origin = min(starts) if starts else None
    keep = {round(i * (len(done) - 1) / (max_points - 1)) for i in range(max_points)}
    steps: list[HypervolumeStep] = []
    front: list[list[float]] = []
    volume, changed = 0.0, False
    for i, trial in enumerate(done):
        point = as_minimised(record, trial) if eligible(record, trial) else None
        # A dominated trial leaves the volume as it was: recomputed only if the front changed.
        grown = _with(front, point) if point is not None else None
        if grown is not None:
            front, changed = grown, True
        if i not in keep:
            continue
        if changed and ref is not None:
            volume, changed = hypervolume(front, ref), False
        assert trial.datetime_complete is not None  # ``done`` keeps only completed times
        elapsed = (trial.datetime_complete - origin).total_seconds() if origin else 0.0
        steps.append(HypervolumeStep(trial.number, i + 1, elapsed, volume))
    return steps


def objective_roles(record: StudyRecord) -> list[str]:
    """What each objective measures, device names left out, so studies on other devices align:
    "metric:<name>", then "latency#1", "latency#2", "peak_memory#1", ...

    Args:
        record: the study.

    Returns:
        One role per objective, in the study's order.
    """
    roles = ["metric:" + record.metric.name]
    seen: dict[str, int] = {}
    for obj in record.objectives[1:]:
        seen[obj.kind] = seen.get(obj.kind, 0) + 1
        roles.append(f"{obj.kind}#{seen[obj.kind]}")
    return roles


def align_objectives(records: Sequence[StudyRecord]) -> list[list[int]]:
    """For each study, the index of each of the first study's objectives in it.

    Studies with the same objective names (the same devices) align by name, whatever their
    order; otherwise by kind and position ("the first device's latency"). Raises UsageError
    when the studies do not optimise the same metric and kinds of objectives.

    Args:
        records: the studies; the first one's objective order is the common one.

    Returns:
        One index list per study (the first's is ``[0, 1, ...]``).

    Raises:
        UsageError: a study's objectives or their directions do not match the first's.
    """
    first = records[0]
    names = [o.name for o in first.objectives]
    roles = objective_roles(first)
    out = []
    for other in records:
        other_names = [o.name for o in other.objectives]
        if sorted(other_names) == sorted(names) and other.metric.name == first.metric.name:
            perm = [other_names.index(n) for n in names]
        elif objective_roles(other) == roles:
            perm = list(range(len(names)))
        else:
            raise UsageError(
                f"{other.folder}: objectives {objective_roles(other)} do not match {roles} of "
                f"{first.folder}; only studies of the same metric and objective kinds "
                "can be compared"
            )
        if [other.objectives[j].direction for j in perm] != first.directions:
            raise UsageError(f"{other.folder}: objective directions differ from the first study")
        out.append(perm)
    return out


def common_reference(
    records: Sequence[StudyRecord], perms: Sequence[Sequence[int]] | None = None
) -> list[float] | None:
    """One reference point for several studies, in the first study's objective order: the
    worst of their own, objective by objective.

    Args:
        records: the studies.
        perms: ``align_objectives(records)``, when already known.

    Returns:
        The point in minimisation space; None when no study has an eligible trial.

    Raises:
        UsageError: the studies' objectives do not match (only when ``perms`` is not given).
    """
    perms = perms if perms is not None else align_objectives(records)
    refs = []
    for record, perm in zip(records, perms, strict=True):
        ref = reference_point(record)
        if ref is not None:
            refs.append([ref[j] for j in perm])
    if not refs:
        return None
    return [max(column) for column in zip(*refs, strict=True)]


def reference_for(reference: Sequence[float], perm: Sequence[int]) -> list[float]:
    """A reference in the first study's order, rearranged into another study's order.

    Args:
        reference: the point in the first study's objective order.
        perm: that study's entry of ``align_objectives``.

    Returns:
        The same values, in the other study's objective order.
    """
    out = [0.0] * len(perm)
    for i, j in enumerate(perm):
        out[j] = reference[i]
    return out

"""The Pareto front of a study and how each candidate compares with the float32 model.

The front is computed here rather than taken from ``study.best_trials`` so that reports need
only the plain records (any storage, any Optuna version) and the rule is explicit:
COMPLETE trials that satisfy the metric-drop constraint and that no other such trial dominates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from devicefit.results.records import StudyRecord, TrialRecord

FLOAT32 = "float32"
SAME_FILE = "same file"  # status of a trial that is one candidate with an earlier one


def dominates(a: Sequence[float], b: Sequence[float], maximize: Sequence[bool]) -> bool:
    """Whether ``a`` is at least as good as ``b`` on every objective and better on one.

    Args:
        a: one objective vector.
        b: another, in the same order.
        maximize: per objective, whether higher is better.

    Returns:
        True when ``a`` dominates ``b``; False for equal vectors.
    """
    better = False
    for x, y, up in zip(a, b, maximize, strict=True):
        if up:
            x, y = -x, -y  # compare everything as minimisation
        if x > y:
            return False
        if x < y:
            better = True
    return better


def non_dominated(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[int]:
    """Indices of the points no other point dominates (equal points all stay), in input order.

    Quadratic, which is fine for studies of hundreds or a few thousand trials.

    Args:
        points: objective vectors.
        maximize: per objective, whether higher is better.

    Returns:
        Indices into ``points``, ascending.
    """
    return [
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p, maximize) for j, q in enumerate(points) if j != i)
    ]


def eligible(record: StudyRecord, trial: TrialRecord) -> bool:
    """A trial that may be on the front: completed, feasible, with every objective value
    finite (an infinite latency is a broken measurement, not a point in objective space).

    A trial with the same file as an earlier one is left out: the first stands for it.

    Args:
        record: the study, for its objectives.
        trial: one of its trials.

    Returns:
        Whether the trial may be on the front.
    """
    return (
        trial.complete
        and trial.feasible
        and trial.same_as is None  # the first trial with the file stands for it
        and all(math.isfinite(trial.values.get(o.name, math.nan)) for o in record.objectives)
    )


def pareto_front(record: StudyRecord) -> list[TrialRecord]:
    """Front members in trial-number order.

    Args:
        record: the study.

    Returns:
        The eligible trials that no other eligible trial dominates.
    """
    candidates = [t for t in record.trials if eligible(record, t)]
    points = [[t.values[o.name] for o in record.objectives] for t in candidates]
    maximize = [o.maximize for o in record.objectives]
    return [candidates[i] for i in non_dominated(points, maximize)]


def status(record: StudyRecord, trial: TrialRecord, front_numbers: set[int]) -> str:
    """One word for plots and tables: front, dominated, infeasible, or the trial state.

    Args:
        record: the study.
        trial: one of its trials.
        front_numbers: the trial numbers of the front.

    Returns:
        "front", "dominated", "infeasible", "same file", or the state in lower case
        ("fail", "pruned", "running", ...) for a trial that did not complete.
    """
    if not trial.complete:
        return trial.state.lower()
    if trial.same_as is not None:
        return SAME_FILE
    if not trial.feasible:
        return "infeasible"
    return "front" if trial.number in front_numbers else "dominated"


def float32_baseline(record: StudyRecord) -> TrialRecord | None:
    """The completed float32 reference trial (the first one, if a retry completed twice).

    Args:
        record: the study; the answer is cached in ``record.cache``.

    Returns:
        The trial, or None while no float32 trial has completed.
    """
    if "float32" not in record.cache:  # asked once per trial by every table and plot
        found = next((t for t in record.trials if t.baseline == FLOAT32 and t.complete), None)
        record.cache["float32"] = found
    return record.cache["float32"]


@dataclass
class Comparison:
    """A trial against the float32 baseline; None where a number is not available."""

    speedup: dict[str, float | None] = field(default_factory=dict)  # device -> × faster
    metric_change: float | None = None  # trial metric - reference, in the metric's unit
    reference: str = ""  # what the metric change is measured against
    size_ratio: float | None = None  # trial size / float32 size
    macs_ratio: float | None = None


def compare(record: StudyRecord, trial: TrialRecord) -> Comparison:
    """A trial against the float32 baseline (or, without one, the reference metric).

    Args:
        record: the study.
        trial: the trial to compare.

    Returns:
        Speed-up per latency device, metric change, and size and MACs ratios; None where
        the trial or the baseline lacks the number.
    """
    base = float32_baseline(record)
    out = Comparison()
    metric = trial.metric(record.objectives)
    if base is not None:
        ref = base.metric(record.objectives)
        out.reference = f"float32 trial #{base.number}"
    else:
        # No float32 trial completed: fall back to the metric measured before the search.
        ref = record.reference_metric
        out.reference = "reference metric" if ref is not None else ""
    if metric is not None and ref is not None:
        out.metric_change = metric - ref
    for obj in record.latency_objectives:
        mine = trial.latency_median(obj)
        theirs = base.latency_median(obj) if base is not None else None
        speedup: float | None = None
        if mine is not None and theirs is not None and mine > 0:
            speedup = theirs / mine
        out.speedup[obj.device or obj.name] = speedup
    if base is not None:
        if trial.stored and base.stored:
            out.size_ratio = _ratio(trial.stored.size_bytes, base.stored.size_bytes)
            out.macs_ratio = _ratio(trial.stored.macs, base.stored.macs)
    return out


def by_latency(record: StudyRecord, trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Fastest first on the first device; trials without a latency go last.

    Args:
        record: the study, for its latency objectives.
        trials: the trials to order.

    Returns:
        The trials as a new list, ties broken by trial number; in the given order when the
        study has no latency objective.
    """
    objs = record.latency_objectives
    if not objs:
        return list(trials)

    def key(t: TrialRecord) -> tuple[bool, float, int]:
        """The sort key: no latency last, then median ms, then trial number.

        Args:
            t: a trial.

        Returns:
            (no latency, median ms or 0, trial number).
        """
        median = t.latency_median(objs[0])
        return (median is None, median or 0.0, t.number)

    return sorted(trials, key=key)


def best_candidate(record: StudyRecord, front: Sequence[TrialRecord]) -> TrialRecord | None:
    """The headline pick: the fastest feasible trial that is not the float32 model itself.

    Every front member already meets the metric-drop budget, so speed decides.

    Args:
        record: the study.
        front: its Pareto front.

    Returns:
        The trial, or None when the front holds only the float32 model (or nothing).
    """
    picks = [t for t in front if t.baseline != FLOAT32]
    ordered = by_latency(record, picks)
    return ordered[0] if ordered else None


def best_recipe(record: StudyRecord) -> TrialRecord | None:
    """The fastest feasible one-technique reference: a float16/int8 baseline or a recipe.

    Args:
        record: the study.

    Returns:
        The eligible trial, or None when no such reference completed feasibly.
    """
    picks = [
        t
        for t in record.trials
        if eligible(record, t)
        and (t.baseline not in (None, FLOAT32) or (t.recipe and t.recipe != "combined"))
    ]
    ordered = by_latency(record, picks)
    return ordered[0] if ordered else None


def _ratio(num: object, den: object) -> float | None:
    if not isinstance(num, int | float) or not isinstance(den, int | float) or den == 0:
        return None
    return float(num) / float(den)

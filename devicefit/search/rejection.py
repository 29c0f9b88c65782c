"""Rejecting hopeless candidates before fine-tuning, from what fine-tuning has recovered.

Fine-tuning is most of a trial's time. A candidate whose structure costs far more metric
than fine-tuning has ever won back in this study will not come back within the budget, so
it is scored on the validation split before fine-tuning and pruned when its drop is beyond
``rejection_limit``. Every fine-tuned trial scores its model before and after fine-tuning
(``metrics["finetune"]``), so the study learns how much fine-tuning recovers on this model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from devicefit.search import attrs

# A candidate may need up to MARGIN times (the budget plus the largest recovery seen so far)
# to be worth fine-tuning: recoveries vary from plan to plan, and a longer fine-tuning of a
# heavier change can recover more than any trial has so far.
MARGIN = 2.0
MIN_RECOVERIES = 3  # fine-tuned trials seen before any candidate is rejected
SHARE_CAP = 0.95  # the most of a drop fine-tuning is counted on to recover
FINETUNE_KEY = "finetune"  # in a trial's metrics: drops before and after fine-tuning
_REFERENCE: dict[int, tuple[Any, float]] = {}


def rejection_limit(max_drop: float, recoveries: list[tuple[float, float]]) -> float | None:
    """The largest drop before fine-tuning that a candidate may show and still be
    fine-tuned; None (reject nothing) until the study has seen ``MIN_RECOVERIES``.

    ``recoveries``: (drop before, drop after) of each fine-tuned trial. A heavier change
    can recover more than any lighter one has, so the limit is the larger of two readings:
    the most recovered in metric units, and the largest share of a drop recovered (a
    candidate that keeps only the rest of its drop within the budget is worth trying)."""
    if len(recoveries) < MIN_RECOVERIES:
        return None
    budget = max(max_drop, 0.0)
    most = max(0.0, *(before - after for before, after in recoveries))
    shares = [(before - after) / before for before, after in recoveries if before > budget]
    share = min(max([0.0, *shares]), SHARE_CAP)
    return MARGIN * max(budget + most, budget / (1.0 - share))


def recoveries_of(trials: list[FrozenTrial]) -> list[tuple[float, float]]:
    """(drop before, drop after) fine-tuning of each complete trial whose fine-tuning
    recovered something measurable: not plans with a weights technique, whose masks or
    clusters are made during fine-tuning (their drop before is not the candidate's)."""
    found = []
    for trial in trials:
        if trial.state != TrialState.COMPLETE:
            continue
        tuned = (trial.user_attrs.get(attrs.METRICS) or {}).get(FINETUNE_KEY) or {}
        if tuned.get("drop_after") is not None and not tuned.get("weights"):
            found.append((float(tuned["drop_before"]), float(tuned["drop_after"])))
    return found


def validation_score(model: Any, task: Any) -> float:
    """The task metric of a Keras model on the validation split."""
    pred = model.predict(task.data.x_val, verbose=0, batch_size=64)
    return float(task.metric(task.data.y_val, np.asarray(pred)))


def validation_drop(model: Any, task: Any) -> float:
    """How much worse ``model`` scores than the task's own model on the validation split
    (metric units, positive = worse); the reference is scored once per process."""
    return task.metric.drop(validation_reference(task), validation_score(model, task))


def validation_reference(task: Any) -> float:
    """The task's own model's metric on the validation split, scored once per process."""
    from devicefit.tasks.base import once_per_task

    return once_per_task(_REFERENCE, task, lambda: validation_score(task.model, task))


def rejection_reason(drop: float, limit: float, metric: str) -> str:
    return (
        f"hopeless before fine-tuning: {metric} drop {drop:.3g} on the validation split, over "
        f"{limit:.3g} ({MARGIN:g}x the budget plus the most fine-tuning has recovered here)"
    )

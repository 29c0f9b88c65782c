"""Rejecting hopeless candidates early, from what fine-tuning has recovered in this study.

Fine-tuning is most of a trial's time. A candidate whose structure costs far more metric
than fine-tuning has ever won back in this study will not come back within the budget, so
it is scored on the validation split, and pruned when its drop is beyond a limit, at three
points:

- before fine-tuning (``rejection_limit`` of the drops before and after every fine-tuning
  told: the weights techniques applied at once, as they would end);
- after each fine-tuning epoch but the last (``epoch_limits``: what the remaining epochs
  recovered in the trials that ran past that epoch), so a plan that is not coming back
  costs one epoch, not all of them;
- for a plan with no fine-tuning at all, before it is converted (``UNRECOVERED_MARGIN``
  times the budget: nothing will win its drop back).

Every fine-tuned trial records its drops before, after each epoch and at the end
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
# A plan without fine-tuning ends about where it starts (conversion moves the metric by a
# fraction of a point): past this many times the budget it cannot end within it.
UNRECOVERED_MARGIN = 2.0
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


# Drops after each epoch, the drop at the end, and the epochs planned.
Trajectory = tuple[tuple[float, ...], float, int]


def epoch_limits(
    max_drop: float, trajectories: list[Trajectory], epochs: int
) -> tuple[float | None, ...]:
    """For a candidate planned for ``epochs`` epochs: the largest best-so-far drop after
    epoch e (e = 1 .. epochs-1) that is still worth the remaining epochs; None for an
    epoch after which too few trials ran on. ``rejection_limit`` read from what the trials
    that ran past epoch e recovered after it, among those planned for at least as many
    epochs (a trial with fewer epochs left recovered less than this one still can)."""
    return tuple(
        rejection_limit(
            max_drop,
            [
                (min(drops[:e]), after)
                for drops, after, planned in trajectories
                if len(drops) > e and planned >= epochs
            ],
        )
        for e in range(1, epochs)
    )


def learned_from(tuned: dict[str, Any]) -> tuple[tuple[float, float] | None, Trajectory | None]:
    """What a told trial's fine-tuning record (``metrics["finetune"]``) teaches: its
    (drop before, drop after), and its drops after each epoch with the drop at the end.
    Neither from a record whose drop before is not the candidate's (a weights technique's
    masks or clusters made during fine-tuning, by versions that did not apply them at
    once to score it)."""
    if tuned.get("drop_after") is None or (tuned.get("weights") and not tuned.get("one_shot")):
        return None, None
    after = float(tuned["drop_after"])
    drops = tuple(float(d) for d in tuned.get("drops") or ())
    planned = int(tuned.get("epochs") or tuned.get("epochs_planned") or len(drops))
    return (float(tuned["drop_before"]), after), ((drops, after, planned) if drops else None)


def history_of(
    trials: list[FrozenTrial],
) -> tuple[list[tuple[float, float]], list[Trajectory]]:
    """The recoveries and epoch trajectories of the complete trials (``learned_from``)."""
    recoveries, trajectories = [], []
    for trial in trials:
        if trial.state != TrialState.COMPLETE:
            continue
        tuned = (trial.user_attrs.get(attrs.METRICS) or {}).get(FINETUNE_KEY) or {}
        recovery, trajectory = learned_from(tuned)
        if recovery is not None:
            recoveries.append(recovery)
        if trajectory is not None:
            trajectories.append(trajectory)
    return recoveries, trajectories


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


def epoch_rejection_reason(epoch: int, epochs: int, drop: float, limit: float, metric: str) -> str:
    return (
        f"hopeless after epoch {epoch} of {epochs}: {metric} drop {drop:.3g} on the validation "
        f"split, over {limit:.3g} ({MARGIN:g}x the budget plus the most the epochs after it "
        "have recovered here)"
    )


def unrecovered_reason(drop: float, limit: float, metric: str) -> str:
    return (
        f"hopeless without fine-tuning: {metric} drop {drop:.3g} on the validation split, "
        f"over {limit:.3g} ({UNRECOVERED_MARGIN:g}x the budget), and the plan fine-tunes for "
        "no epoch to win it back"
    )

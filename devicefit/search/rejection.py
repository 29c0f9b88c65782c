"""Rejecting hopeless candidates early, from what fine-tuning has recovered in this study.

Fine-tuning is most of a trial's time. A candidate whose structure costs far more metric
than fine-tuning has ever won back in this study will not come back within the budget, so
it is scored on the validation split, and pruned when its drop is beyond a limit, at three
points:

- before fine-tuning (``rejection_limit`` of the drops before, and after as many epochs as
  the candidate plans, of every fine-tuning told; the weights techniques applied at once,
  as they would end);
- after each fine-tuning epoch but the last (``epoch_limits``: what the remaining epochs
  recovered in the trials that ran past that epoch), so a plan that is not coming back
  costs one epoch, not all of them;
- for a plan with no fine-tuning at all, before it is converted (``UNRECOVERED_MARGIN``
  times the budget: nothing will win its drop back).

Every fine-tuned trial records its drops before, after each epoch and at the end
(``metrics["finetune"]``), so the study learns how much fine-tuning recovers on this model.
"""

from __future__ import annotations

from typing import Any, NamedTuple

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
    candidate that keeps only the rest of its drop within the budget is worth trying).
    Neither counts on more than ``SHARE_CAP`` of a drop: at chance level, points say
    nothing (a plan that came back 88 points from chance does not make every plan at
    chance worth fine-tuning; most stay there).

    Args:
        max_drop: the study's metric-drop budget.
        recoveries: as above.

    Returns:
        ``MARGIN`` times that limit, in metric units; or None.
    """
    if len(recoveries) < MIN_RECOVERIES:
        return None
    budget = max(max_drop, 0.0)
    most = max(0.0, *(before - after for before, after in recoveries))
    shares = [(before - after) / before for before, after in recoveries if before > budget]
    share = min(max([0.0, *shares]), SHARE_CAP)
    limit = max(budget + most, budget / (1.0 - share))
    if budget > 0:  # with no loss allowed, a share of nothing is nothing: points only
        limit = min(limit, budget / (1.0 - SHARE_CAP))
    return MARGIN * limit


class Recovery(NamedTuple):
    """What one fine-tuned trial recovered: its drop before fine-tuning, its drop at the
    end, its drops after each epoch of the planned run (none in older records), the
    epochs planned and the epochs run in all (extra epochs included)."""

    before: float
    after: float
    drops: tuple[float, ...]
    planned: int
    run: int


def reached(record: Recovery, epochs: int) -> float:
    """The best drop ``record``'s trial had reached after ``epochs`` epochs: a candidate
    planned for fewer epochs than a trial ran is judged on what those epochs recovered,
    not on the whole run (a 1-epoch plan is not a 7-epoch one).

    Args:
        record: what one fine-tuned trial recovered.
        epochs: the candidate's planned epochs.

    Returns:
        The drop, in metric units (its final drop when it ran no more epochs or has no
        per-epoch drops).
    """
    if not record.drops or record.run <= epochs:
        return record.after
    return min((record.before, *record.drops[:epochs]))  # the best weights are kept


def recoveries_within(records: list[Recovery], epochs: int) -> list[tuple[float, float]]:
    """(drop before, drop reached within ``epochs`` epochs) of each record: what a
    candidate fine-tuning for ``epochs`` epochs can count on (``rejection_limit``).

    Args:
        records: what earlier fine-tunings recovered.
        epochs: the candidate's planned epochs.

    Returns:
        The pairs, one per record, in its order.
    """
    return [(record.before, reached(record, epochs)) for record in records]


def epoch_limits(max_drop: float, records: list[Recovery], epochs: int) -> tuple[float | None, ...]:
    """For a candidate planned for ``epochs`` epochs: the largest best-so-far drop after
    epoch e (e = 1 .. epochs-1) that is still worth the remaining epochs; None for an
    epoch after which too few trials ran on. ``rejection_limit`` read from what the trials
    that ran past epoch e recovered after it up to epoch ``epochs``, among those planned
    for (or run) at least as many epochs (a trial with fewer epochs left recovered less
    than this one still can).

    Args:
        max_drop: the study's metric-drop budget.
        records: what earlier fine-tunings recovered.
        epochs: the candidate's planned epochs.

    Returns:
        One limit per epoch but the last, in metric units (None: no limit).
    """
    return tuple(
        rejection_limit(
            max_drop,
            [
                (min(record.drops[:e]), reached(record, epochs))
                for record in records
                if len(record.drops) > e and max(record.planned, record.run) >= epochs
            ],
        )
        for e in range(1, epochs)
    )


def learned_from(tuned: dict[str, Any]) -> Recovery | None:
    """What a told trial's fine-tuning record (``metrics["finetune"]``) teaches; None
    for a record whose drop before is not the candidate's (a weights technique's masks
    or clusters made during fine-tuning, by versions that did not apply them at once to
    score it), or without an end (pruned).

    Args:
        tuned: the trial's stored fine-tuning record.

    Returns:
        Its Recovery, or None as above.
    """
    if tuned.get("drop_after") is None or (tuned.get("weights") and not tuned.get("one_shot")):
        return None
    drops = tuple(float(d) for d in tuned.get("drops") or ())
    planned = int(tuned.get("epochs") or tuned.get("epochs_planned") or len(drops))
    run = int(tuned.get("epochs_run") or len(drops)) + int(tuned.get("epochs_extra_run") or 0)
    return Recovery(float(tuned["drop_before"]), float(tuned["drop_after"]), drops, planned, run)


def history_of(trials: list[FrozenTrial]) -> list[Recovery]:
    """What fine-tuning recovered in the complete trials (``learned_from``).

    Args:
        trials: the study's trials; only complete ones count.

    Returns:
        A Recovery per complete trial that teaches one, in the trials' order.
    """
    records = []
    for trial in trials:
        if trial.state != TrialState.COMPLETE:
            continue
        tuned = (trial.user_attrs.get(attrs.METRICS) or {}).get(FINETUNE_KEY) or {}
        record = learned_from(tuned)
        if record is not None:
            records.append(record)
    return records


def validation_score(model: Any, task: Any) -> float:
    """The task metric of a Keras model on the validation split.

    Args:
        model: a Keras model with the task's inputs and outputs.
        task: the loaded task.

    Returns:
        The metric, in its own unit and direction.
    """
    from devicefit.spaces.eager_predict import model_outputs

    return float(task.metric(task.data.y_val, model_outputs(model, task.data.x_val)))


def validation_drop(model: Any, task: Any) -> float:
    """How much worse ``model`` scores than the task's own model on the validation split
    (metric units, positive = worse); the reference is scored once per process.

    Args:
        model: a candidate Keras model.
        task: the loaded task.

    Returns:
        The drop.
    """
    return task.metric.drop(validation_reference(task), validation_score(model, task))


def validation_reference(task: Any) -> float:
    """The task's own model's metric on the validation split, scored once per process.

    Args:
        task: the loaded task.

    Returns:
        The metric, in its own unit.
    """
    from devicefit.tasks.base import once_per_task

    return once_per_task(_REFERENCE, task, lambda: validation_score(task.model, task))


def rejection_reason(drop: float, limit: float, epochs: int, metric: str) -> str:
    """Why a candidate was pruned before fine-tuning, as the trial records it.

    Args:
        drop: its validation drop before fine-tuning.
        limit: the limit it exceeded (``rejection_limit``).
        epochs: its planned fine-tuning epochs.
        metric: the metric's name.

    Returns:
        The reason: the drop, the limit and what the limit is made of.
    """
    return (
        f"hopeless before fine-tuning: {metric} drop {drop:.3g} on the validation split, over "
        f"{limit:.3g} ({MARGIN:g}x the budget plus the most {epochs} epoch(s) of fine-tuning "
        f"have recovered here, counted on for at most {SHARE_CAP:.0%} of a drop)"
    )


def epoch_rejection_reason(epoch: int, epochs: int, drop: float, limit: float, metric: str) -> str:
    """Why a candidate was pruned after a fine-tuning epoch, as the trial records it.

    Args:
        epoch: the epoch after which it stopped.
        epochs: its planned fine-tuning epochs.
        drop: its best validation drop so far.
        limit: the limit of that epoch (``epoch_limits``).
        metric: the metric's name.

    Returns:
        The reason: the drop, the limit and what the limit is made of.
    """
    return (
        f"hopeless after epoch {epoch} of {epochs}: {metric} drop {drop:.3g} on the validation "
        f"split, over {limit:.3g} ({MARGIN:g}x the budget plus the most the epochs after it "
        f"have recovered here, counted on for at most {SHARE_CAP:.0%} of a drop)"
    )


def unrecovered_reason(drop: float, limit: float, metric: str) -> str:
    """Why a changed candidate without fine-tuning was pruned before conversion.

    Args:
        drop: its validation drop.
        limit: the limit it exceeded (``UNRECOVERED_MARGIN`` times the budget).
        metric: the metric's name.

    Returns:
        The reason: the drop, the limit and what the limit is made of.
    """
    return (
        f"hopeless without fine-tuning: {metric} drop {drop:.3g} on the validation split, "
        f"over {limit:.3g} ({UNRECOVERED_MARGIN:g}x the budget), and the plan fine-tunes for "
        "no epoch to win it back"
    )


def request_limits(max_drop: float, records: list[Recovery], epochs: int) -> dict[str, Any]:
    """The limits beyond which a sampled trial is pruned (TrialRequest's ``reject_*``).

    Args:
        max_drop: the study's metric-drop budget.
        records: what earlier fine-tunings recovered.
        epochs: the trial's fine-tuning epochs.

    Returns:
        Its drop limit before fine-tuning, after each epoch but the last, and without
        fine-tuning (None where there is none yet).
    """
    return {
        "reject_drop": rejection_limit(max_drop, recoveries_within(records, epochs)),
        "reject_after_epoch": epoch_limits(max_drop, records, epochs),
        # With no loss allowed, a validation drop of one sample may still test within it.
        "reject_unrecovered": UNRECOVERED_MARGIN * max_drop if max_drop > 0 else None,
    }

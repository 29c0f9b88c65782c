"""Telling the study how a trial ended: complete with its scores, failed or pruned.

Each tell sets the trial's attributes first and tells last, so a step retried after a
storage outage repeats safely; a tell that reached the storage before the connection
dropped is found already told, which is success.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from devicefit.search import attrs
from devicefit.search.scoring import Scored


def tell_complete(study: optuna.Study, trial: optuna.Trial, scored: Scored) -> None:
    """Store ``scored``'s record and constraints on ``trial`` and tell its values.

    Args:
        study: the study ``trial`` belongs to.
        trial: the trial asked for the candidate.
        scored: what score_candidate gave.

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: the trial was finished otherwise
            than complete (by someone else).
    """

    def tell() -> None:
        trial.set_user_attr(attrs.METRICS, scored.metrics.to_dict())
        if scored.metrics.same_as is not None:
            trial.set_user_attr(attrs.SAME_AS, scored.metrics.same_as)
        for key, value in scored.constraints.items():
            trial.set_constraint(key, value)
        study.tell(trial, scored.values)

    _told_once(study, trial, tell, lambda state: state == TrialState.COMPLETE)


def tell_failed(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Tell ``trial`` FAIL with ``reason`` (shown in reports as its fail_reason).

    Args:
        study: the study ``trial`` belongs to.
        trial: the failed trial.
        reason: one line saying why.

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: the trial is not finished in the
            storage, yet cannot be updated.
    """

    def tell() -> None:
        trial.set_user_attr(attrs.FAIL_REASON, reason)
        study.tell(trial, state=TrialState.FAIL)

    _told_once(study, trial, tell, lambda state: state is not None)


def tell_pruned(
    study: optuna.Study, trial: optuna.Trial, reason: str, metrics: dict[str, Any]
) -> None:
    """Tell ``trial`` PRUNED (Optuna's state for a trial stopped early on purpose).

    Args:
        study: the study ``trial`` belongs to.
        trial: the trial rejected as hopeless.
        reason: why it was rejected.
        metrics: what it learned before (trial_metrics.pruned_metrics).

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: the trial is not finished in the
            storage, yet cannot be updated.
    """

    def tell() -> None:
        trial.set_user_attr(attrs.PRUNED_REASON, reason)
        trial.set_user_attr(attrs.METRICS, metrics)
        study.tell(trial, state=TrialState.PRUNED)

    _told_once(study, trial, tell, lambda state: state is not None)


def _told_once(
    study: optuna.Study,
    trial: optuna.Trial,
    tell: Callable[[], None],
    success: Callable[[TrialState | None], bool],
) -> None:
    try:
        tell()
    except optuna.exceptions.UpdateFinishedTrialError:
        if not success(finished_state(study, trial.number)):
            raise


def finished_state(study: optuna.Study, number: int) -> TrialState | None:
    """The stored state of trial ``number`` if it is finished, else None.

    A tell can reach the storage and commit while the connection drops before the answer
    comes back: the retried step then finds its trial already told. That is success, not
    an error; anything else finishing the trial is for the caller.

    Args:
        study: the study.
        number: the trial's number.

    Returns:
        Its state when finished (COMPLETE, FAIL, PRUNED), None otherwise.
    """
    for trial in study.get_trials(deepcopy=False):
        if trial.number == number:
            return trial.state if trial.state.is_finished() else None
    return None

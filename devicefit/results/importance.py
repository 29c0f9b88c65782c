"""Which search parameters matter for each objective, by Optuna's PED-ANOVA evaluator.

PED-ANOVA (Optuna's default) handles conditional parameters, which is what a technique
search space is: a rank exists only when low-rank factorization is switched on. It is run
on an in-memory copy of the completed trials, so any storage (and a study still running
elsewhere) gives the same answer without writing to it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, cast

from devicefit.results.records import StudyRecord, TrialRecord

if TYPE_CHECKING:
    import optuna

MIN_TRIALS = 8  # below this, a top quantile of 10-20% holds one or two trials: noise


@dataclass
class Importances:
    by_objective: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> param -> w
    reason: str = ""  # why there are none, when there are none


def param_importances(record: StudyRecord) -> Importances:
    """How much each search parameter matters for each objective.

    Never raises: importances are one section of a report, not a reason to lose it.

    Args:
        record: the study; only its completed trials with parameters are used.

    Returns:
        Objective name -> parameter -> importance (the weights of one objective add up
        to 1); ``reason`` says why some or all are missing (too few trials, an error).
    """
    try:
        return _importances(record)
    except Exception as exc:  # noqa: BLE001 - stored parameters Optuna will not take back
        return Importances(reason=f"{type(exc).__name__}: {exc}")


def _importances(record: StudyRecord) -> Importances:
    import optuna

    done = [
        t
        for t in record.trials
        if t.complete and t.params and len(t.values) == len(record.objectives)
    ]
    if len(done) < MIN_TRIALS:
        return Importances(
            reason=f"{len(done)} completed trials with parameters; need {MIN_TRIALS}"
        )
    study = _in_memory_study(record, done)
    out = Importances()
    for i, obj in enumerate(record.objectives):
        sign = -1.0 if obj.maximize else 1.0  # the evaluator assumes lower is better

        def target(trial: optuna.trial.FrozenTrial, i: int = i, sign: float = sign) -> float:
            """The objective ``i`` of a trial, negated when maximised (the evaluator minimises).

            Args:
                trial: a trial of the in-memory copy.
                i: the objective's index, bound when defined.
                sign: -1.0 for a maximised objective, else 1.0.

            Returns:
                The value to rank trials by, lower better.
            """
            return sign * trial.values[i]

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = optuna.importance.get_param_importances(study, target=target)
        except (ValueError, RuntimeError) as exc:  # e.g. every trial has the same value
            out.reason = f"{obj.name}: {exc}"
            continue
        out.by_objective[obj.name] = {k: float(v) for k, v in found.items()}
    return out


def _in_memory_study(record: StudyRecord, done: list[TrialRecord]) -> optuna.Study:
    """A new in-memory Optuna study holding the ``done`` trials, for the evaluator."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        # The names Optuna gave when the record was read ("maximize", "minimize").
        directions = cast(list[Literal["minimize", "maximize"]], record.directions)
        study = optuna.create_study(directions=directions)
    finally:
        optuna.logging.set_verbosity(verbosity)
    for t in done:
        values = [t.values[o.name] for o in record.objectives]
        study.add_trial(
            optuna.trial.create_trial(params=t.params, distributions=t.distributions, values=values)
        )
    return study

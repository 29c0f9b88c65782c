"""What a trial builds: its plan, and an earlier trial's candidate when it is the same.

A baseline or recipe trial has a fixed plan, a profile plan is built as it was made,
and every other trial's plan is the sampler's draw from the search space.
"""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path
from typing import Any

import optuna

from devicefit.search import attrs
from devicefit.search.greedy_plan import said_to_sampler
from devicefit.search.outcomes import Outcomes
from devicefit.search.rejection import request_limits
from devicefit.search.same_file import KnownCandidates, reuse_output
from devicefit.search.study import FIXED_KEYS
from devicefit.search.trial import TrialOutput
from devicefit.spaces.base import Plan
from devicefit.spaces.space import SearchSpace, baseline_plan


def plan_for(space: SearchSpace, trial: optuna.Trial) -> Plan:
    """The plan ``trial`` builds.

    Args:
        space: the study's search space.
        trial: a trial just asked.

    Returns:
        A baseline's plan, a profile plan as it was made, or the sampler's draw (a
        recipe's obvious settings on every unit; a sampled trial leaves out what the
        profiles did).
    """
    mode = trial.user_attrs.get(attrs.BASELINE)
    if mode:
        return baseline_plan(mode)
    if attrs.PROFILE_PLAN in trial.user_attrs and attrs.PLAN in trial.user_attrs:
        plan = Plan.from_dict(trial.user_attrs[attrs.PLAN])
        if said_to_sampler(space, plan):  # enqueued with them: the sampler sees them
            space.sample(trial, leave_out=False)
        return plan
    return space.sample(trial, leave_out=attrs.RECIPE not in trial.user_attrs)


def reused(
    folder: Path, number: int, plan: Plan, known: KnownCandidates
) -> cf.Future[TrialOutput] | None:
    """An earlier trial's candidate when it had ``plan``: nothing is built, it is measured
    again.

    Args:
        folder: the study's results folder.
        number: the trial's number.
        plan: its plan.
        known: the candidates told so far.

    Returns:
        A finished future of that trial's file and scores, or None (then build).
    """
    earlier = known.same_plan(plan.to_dict())
    if earlier is None:
        return None
    output = reuse_output(folder, number, earlier, known)
    if output is None:
        return None
    done: cf.Future[TrialOutput] = cf.Future()
    done.set_result(output)
    return done


# Pruned trials do not count toward the trials asked for; past this many per trial asked,
# candidates are no longer rejected, so a study whose sampler keeps proposing hopeless
# plans still ends.
MAX_PRUNED_PER_TRIAL = 2


def rejection_for(
    trial: optuna.Trial, plan: Plan, budget: float, outcomes: Outcomes, trials: int
) -> dict[str, Any]:
    """The limits beyond which ``trial`` is pruned as hopeless (TrialRequest's ``reject_*``).

    Args:
        trial: the trial asked.
        plan: its plan.
        budget: the study's metric-drop budget.
        outcomes: what the search learned so far (recoveries, trials pruned).
        trials: the complete trials the study asks for.

    Returns:
        The limits of search/rejection.py; none for the fixed trials (baselines, recipes,
        profile plans: they are the references), nor once the study pruned
        ``MAX_PRUNED_PER_TRIAL`` per trial asked.
    """
    if any(key in trial.user_attrs for key in FIXED_KEYS):
        return {}
    if outcomes.pruned >= MAX_PRUNED_PER_TRIAL * trials:
        return {}  # the sampler keeps proposing hopeless plans: let the study end
    return request_limits(budget, outcomes.recoveries, plan.finetune_epochs)

"""The fixed trial that combines every recipe that stayed within the metric-drop budget."""

import optuna

from devicefit.search import attrs
from devicefit.search.study import COMBINED, enqueue_next_fixed, set_study_info
from devicefit.spaces import all_techniques
from devicefit.spaces.space import RECIPE_SETTINGS, SearchSpace


def _study(space: SearchSpace) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr(attrs.STUDY_KEY, {})
    fixed = [
        {"attrs": {attrs.RECIPE: r["technique"]}, "params": r["params"]}
        for r in space.recipe_params(RECIPE_SETTINGS)
    ]
    fixed.append(
        {"attrs": {attrs.RECIPE: COMBINED}, "params": space.combined_settings(), "combine": True}
    )
    set_study_info(study, fixed_trials=fixed)
    return study


def _run_recipes(
    study: optuna.Study,
    space: SearchSpace,
    drops: dict[str, float | None],
    latency: dict[str, float] | None = None,
) -> None:
    """A float32 baseline at 10 ms, then every recipe, told with the given constraint
    (None: it failed) and latency (default 5 ms)."""
    study.enqueue_trial({}, user_attrs={attrs.BASELINE: "float32"})
    baseline = study.ask()
    baseline.set_constraint(attrs.CONSTRAINT, 0.0)
    study.tell(baseline, [1.0, 10.0])
    for _ in drops:
        assert enqueue_next_fixed(study)
        trial = study.ask()
        space.sample(trial)
        technique = trial.user_attrs[attrs.RECIPE]
        drop = drops[technique]
        if drop is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        trial.set_constraint(attrs.CONSTRAINT, drop)
        study.tell(trial, [1.0, (latency or {}).get(technique, 5.0)])


def test_feasible_recipes_are_combined_at_the_longest_finetuning() -> None:
    space = SearchSpace(all_techniques())
    study = _study(space)
    drops = {
        "channel_pruning": -0.1,
        "kernel_reduction": 0.0,  # exactly at the budget: feasible
        "lowrank": 0.4,  # over the budget: left out
        "magnitude_pruning": None,  # failed: left out
    }
    _run_recipes(study, space, drops)
    assert enqueue_next_fixed(study)
    trial = study.ask()
    assert trial.user_attrs[attrs.RECIPE] == COMBINED
    plan = space.sample(trial)
    assert [s.technique for s in plan.steps] == [
        "channel_pruning",
        "kernel_reduction",
        "quantization",
    ]
    assert plan.step("channel_pruning").params == RECIPE_SETTINGS["channel_pruning"]
    assert plan.step("kernel_reduction").params == RECIPE_SETTINGS["kernel_reduction"]
    assert plan.step("quantization").params == {"mode": "float32"}
    assert plan.finetune_epochs == space.epochs.high
    study.tell(trial, [1.0, 1.0])
    assert not enqueue_next_fixed(study)  # once only


def test_recipes_that_did_not_speed_the_model_up_are_left_out() -> None:
    space = SearchSpace(all_techniques())
    study = _study(space)
    drops = {"channel_pruning": -0.1, "kernel_reduction": 0.0, "lowrank": 0.0}
    drops["magnitude_pruning"] = 0.0
    latency = {"magnitude_pruning": 12.0, "lowrank": 10.0}  # slower than / as slow as float32
    _run_recipes(study, space, drops, latency)
    assert enqueue_next_fixed(study)
    plan = space.sample(study.ask())
    assert [s.technique for s in plan.steps] == [
        "channel_pruning",
        "kernel_reduction",
        "quantization",
    ]


def test_no_combination_while_a_recipe_runs_or_with_one_feasible_recipe() -> None:
    space = SearchSpace(all_techniques())
    study = _study(space)
    drops = {"channel_pruning": -0.1, "kernel_reduction": 0.5, "lowrank": 0.5}
    _run_recipes(study, space, drops)
    assert enqueue_next_fixed(study)
    running = study.ask()  # the last recipe (magnitude_pruning) is still running
    space.sample(running)
    assert not enqueue_next_fixed(study)
    running.set_constraint(attrs.CONSTRAINT, 0.2)
    study.tell(running, [1.0, 1.0])
    # Only channel pruning held the metric: nothing to combine, and no trial enqueued.
    assert not enqueue_next_fixed(study)
    assert not [t for t in study.get_trials() if t.user_attrs.get(attrs.RECIPE) == COMBINED]

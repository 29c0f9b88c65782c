"""SearchSpace: plans from Optuna trials, baselines and one-technique recipes."""

from __future__ import annotations

import optuna
import pytest

from devicefit.errors import UsageError
from devicefit.spaces import all_techniques, get_technique
from devicefit.spaces.space import RECIPE_SETTINGS, SearchSpace, baseline_plan


def _study() -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))


def test_sampled_plans_follow_switches_and_stage_order() -> None:
    space = SearchSpace(all_techniques())
    study = _study()
    for _ in range(30):
        trial = study.ask()
        plan = space.sample(trial)
        names = [s.technique for s in plan.steps]
        assert names[-1] == "quantization"
        on = [t.name for t in space.techniques if trial.params.get(f"{t.name}.on")]
        assert names[:-1] == on  # exactly the techniques switched on, in plan order
        assert (plan.finetune_epochs > 0) <= bool(on)  # no fine-tuning of an unchanged model
        assert 0 <= plan.finetune_epochs <= 3
        study.tell(trial, 0.0)


def test_overridden_ranges_bound_the_samples() -> None:
    space = SearchSpace(
        all_techniques(),
        {
            "channel_pruning": {"ratio": [0.2, 0.3]},
            "quantization": {"mode": ["int8"]},
            "finetune": {"epochs": [2, 2]},
        },
    )
    study = _study()
    for _ in range(20):
        trial = study.ask()
        plan = space.sample(trial)
        step = plan.step("channel_pruning")
        if step:
            assert 0.2 <= step.params["ratio"] <= 0.3
        assert plan.step("quantization").params == {"mode": "int8"}
        assert plan.finetune_epochs in (0, 2)
        study.tell(trial, 0.0)


def test_recipes_are_one_technique_each_and_replay_exactly() -> None:
    space = SearchSpace(all_techniques(), {"channel_pruning": {"ratio": [0.4, 0.6]}})
    recipes = space.recipe_params(RECIPE_SETTINGS)
    assert sorted(r["technique"] for r in recipes) == sorted(RECIPE_SETTINGS)
    study = _study()
    for recipe in recipes:
        study.enqueue_trial(recipe["params"])
        plan = space.sample(study.ask())
        assert [s.technique for s in plan.steps] == [recipe["technique"], "quantization"]
        assert plan.step("quantization").params["mode"] == "float32"
        assert plan.finetune_epochs == 2
        if recipe["technique"] == "channel_pruning":
            assert plan.steps[0].params["ratio"] == 0.4  # clipped into the user's range


def test_baseline_plan_is_the_original_at_one_mode() -> None:
    plan = baseline_plan("float16")
    assert plan.short() == "quantization(mode=float16)" and plan.finetune_epochs == 0


def test_ranges_for_a_disabled_technique_are_rejected() -> None:
    with pytest.raises(UsageError, match="ranges: no enabled technique named lowrank"):
        SearchSpace([get_technique("quantization")], {"lowrank": {"rank_ratio": [0.2, 0.5]}})


def test_negative_epochs_rejected() -> None:
    with pytest.raises(UsageError, match="epochs"):
        SearchSpace(all_techniques(), {"finetune": {"epochs": [-1, 2]}})

"""The profile-guided greedy: most time saved per metric lost first, within an allowance,
techniques stacked on a unit where layer times tell what each saves on what the others
left; the plans it makes are built as stored."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from devicefit.search.greedy_plan import (
    Choice,
    between_settings,
    faster_mode,
    greedy_choices,
    greedy_plans,
    plan_of,
    plan_saved_ms,
    said_to_sampler,
    untouched_ms,
)
from devicefit.spaces import get_technique
from devicefit.spaces.base import PER_LAYER, Plan


def _point(unit: str, technique: str, level: str, setting: Any, drop: float, saved: float) -> dict:
    return {
        "unit": unit,
        "layers": [f"{unit}_conv"],
        "technique": technique,
        "level": level,
        "setting": setting,
        "drop": drop,
        "error": None,
        "saved_ms": {"local": saved},
    }


POINTS = [
    _point("b1", "channel_pruning", "identity", 0.0, 0.0, 0.0),
    _point("b1", "channel_pruning", "mild", 0.25, 0.1, 1.0),  # 10 ms per point
    _point("b1", "channel_pruning", "strong", 0.7, 2.0, 3.0),  # +2 ms for +1.9 points
    _point("b1", "lowrank", "mild", 0.75, 0.05, 0.4),  # 8 ms per point, same unit
    _point("b2", "lowrank", "medium", 0.5, 0.2, 1.0),  # 5 ms per point
    _point("b3", "kernel_reduction", "mild", 1, 5.0, 2.0),  # expensive
    _point("b3", "magnitude_pruning", "mild", 0.3, 0.0, 0.0),  # saves nothing on dense kernels
    _point("b4", "channel_pruning", "mild", 0.25, -0.2, 0.5),  # better than the original
]


def test_the_best_rate_goes_first_within_the_allowance() -> None:
    taken = greedy_choices(POINTS, "local", allowance=0.5, floor=0.01)
    # b4 costs nothing (charged the floor), then b1 mild (10/0.1), then b2 (5); b1 strong
    # (1.9 more) and b3 (5.0) do not fit in half a point.
    assert [(c.unit, c.technique, c.level) for c in taken] == [
        ("b4", "channel_pruning", "mild"),
        ("b1", "channel_pruning", "mild"),
        ("b2", "lowrank", "medium"),
    ]
    wide = greedy_choices(POINTS, "local", allowance=3.0, floor=0.01)
    by_unit = {c.unit: (c.technique, c.level) for c in wide}
    # A stronger setting of the unit's technique replaces the milder one; never two
    # techniques on the same unit.
    assert by_unit["b1"] == ("channel_pruning", "strong")
    assert len({c.unit for c in wide}) == len(wide)
    assert "b3" not in by_unit  # 2.0 + 0.2 + 5.0 is over 3
    assert all(c.technique != "magnitude_pruning" for c in wide)
    assert greedy_choices(POINTS, "elsewhere", allowance=3.0, floor=0.01) == []


def test_a_plan_sets_each_unit_and_leaves_the_rest_untouched() -> None:
    taken = greedy_choices(POINTS, "local", allowance=0.5, floor=0.01)
    plan = plan_of(taken, "int8", epochs=3)
    steps = {s.technique: s.params for s in plan.steps}
    assert list(steps) == ["channel_pruning", "lowrank", "quantization"]
    pruning = steps["channel_pruning"]
    identity = get_technique("channel_pruning").identity_params()
    assert {k: v for k, v in pruning.items() if k != PER_LAYER} == identity
    assert pruning[PER_LAYER] == {"b4_conv": {"ratio": 0.25}, "b1_conv": {"ratio": 0.25}}
    assert steps["lowrank"][PER_LAYER] == {"b2_conv": {"rank_ratio": 0.5}}
    assert steps["quantization"] == {"mode": "int8"} and plan.finetune_epochs == 3


def test_the_converter_is_the_faster_file_of_the_untouched_model() -> None:
    assert faster_mode({"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}) == "int8"
    assert faster_mode({"float32": {"median_ms": 2.0}, "int8": {"median_ms": 2.5}}) == "float32"
    assert faster_mode({"float32": {"median_ms": 2.0}, "int8": {"unavailable": "x"}}) == "float32"


def test_int8_is_chosen_only_when_its_own_loss_fits_the_budget() -> None:
    timed = {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}
    assert faster_mode(timed, int8_drop=0.57, budget=0.3) == "float32"  # SRCNN's int8 file
    assert faster_mode(timed, int8_drop=0.2, budget=0.3) == "int8"
    assert faster_mode(timed, int8_drop=None, budget=0.3) == "int8"  # not scored: speed alone
    profiles = {"local": timed}
    over = greedy_plans({"points": POINTS}, profiles, "local", 1.0, 3, int8_drop=1.5)
    assert over and all(s["plan"]["steps"][-1]["params"] == {"mode": "float32"} for s in over)


def test_the_int8_file_s_loss_comes_off_every_allowance() -> None:
    profiles = {"local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}}
    free = greedy_plans({"points": POINTS}, profiles, "local", budget=1.0, epochs=3)
    charged = greedy_plans({"points": POINTS}, profiles, "local", 1.0, 3, int8_drop=0.9)
    assert all(s["plan"]["steps"][-1]["params"] == {"mode": "int8"} for s in charged)
    # 1x leaves 0.1: b2 (0.2) no longer fits beside the free b4 and b1 mild (0.1).
    assert [c["unit"] for c in free[0]["choices"]] == ["b4", "b1", "b2"]
    assert [c["unit"] for c in charged[0]["choices"]] == ["b4", "b1"]
    for spec in charged:  # greedy-<factor>x: its steps within factor x budget - 0.9
        factor = float(spec["attrs"]["profile_plan"].removeprefix("greedy-").removesuffix("x"))
        assert sum(c["drop"] for c in spec["choices"]) <= factor - 0.9 + 1e-9, spec["choices"]


def test_plans_for_growing_allowances_are_distinct_and_cautious_first() -> None:
    profiles = {"local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}}
    specs = greedy_plans({"points": POINTS}, profiles, "local", budget=1.0, epochs=3)
    names = [s["attrs"]["profile_plan"] for s in specs]
    # The allowances' plans, then below the first a milder one (0.1x makes the same plan
    # as 0.3x: once), and between the two the low-rank setting half-way.
    assert names == ["greedy-1x", "greedy-3x", "greedy-8x", "greedy-0.3x", "greedy-1x-b2-0.75"]
    saved = [sum(c["saved_ms"] for c in s["choices"]) for s in specs]
    assert saved[:3] == sorted(saved[:3]) and len(set(saved[:3])) == 3
    assert saved[3] < saved[0]
    assert all(s["plan"]["steps"][-1]["params"] == {"mode": "int8"} for s in specs)


def test_only_a_conversion_the_study_may_use_and_a_zero_budget_still_plans() -> None:
    profiles = {"local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}}
    assert faster_mode(profiles["local"], ("float32", "float16")) == "float32"
    specs = greedy_plans({"points": POINTS}, profiles, "local", 1.0, 3, ("float32",))
    assert all(s["plan"]["steps"][-1]["params"] == {"mode": "float32"} for s in specs)
    # No metric may be lost: only what costs nothing (b4, better than the original).
    (spec,) = greedy_plans({"points": POINTS}, profiles, "local", budget=0.0, epochs=3)
    assert [c["unit"] for c in spec["choices"]] == ["b4"]


def test_a_unit_s_cheap_first_step_gives_way_to_another_technique_that_saves_more() -> None:
    points = [
        _point("b1", "lowrank", "strong", 0.25, 0.2, 0.5),  # cheap: taken first
        _point("b1", "channel_pruning", "strong", 0.7, 6.0, 3.0),
    ]
    assert [(c.technique, c.level) for c in greedy_choices(points, "local", 1.0, 0.01)] == [
        ("lowrank", "strong")
    ]
    # With room for the deeper cut, the unit switches to it (2.5 ms more for 5.8 points).
    (taken,) = greedy_choices(points, "local", 8.0, 0.01)
    assert (taken.unit, taken.technique) == ("b1", "channel_pruning")
    plan = plan_of([taken], "int8", epochs=3)
    assert [s.technique for s in plan.steps] == ["channel_pruning", "quantization"]


def _per_block_space() -> Any:
    from devicefit.spaces.space import SearchSpace

    techniques = [get_technique(n) for n in ("channel_pruning", "lowrank", "quantization")]
    units = {"channel_pruning": {u: [f"{u}_conv"] for u in ("b1", "b2", "b4")}}
    units["lowrank"] = {"b2": ["b2_conv"]}
    granularity = {"channel_pruning": "per-block", "lowrank": "per-block"}
    return SearchSpace(techniques, {}, granularity, units)


def test_a_plan_the_space_can_say_is_enqueued_with_its_parameters() -> None:
    import optuna

    space = _per_block_space()
    taken = greedy_choices(POINTS, "local", allowance=0.5, floor=0.01)
    plan = plan_of(taken, "int8", epochs=3)
    said = space.expressed(plan)
    assert said is not None
    params, same = said
    assert params["channel_pruning.ratio@b1"] == 0.25 and params["lowrank.rank_ratio@b2"] == 0.5
    assert params["channel_pruning.ratio@b2"] == 0.0  # untouched units said as the identity
    assert params["quantization.mode"] == "int8" and params["finetune.epochs"] == 3
    assert space.sample(optuna.trial.FixedTrial(params), leave_out=False) == same
    ratios = {n: s["ratio"] for n, s in same.step("channel_pruning").params[PER_LAYER].items()}
    assert ratios == {"b1_conv": 0.25, "b2_conv": 0.0, "b4_conv": 0.25}
    # Searched globally, per-unit settings cannot be said: no parameters.
    from devicefit.spaces.space import SearchSpace

    flat = SearchSpace([get_technique("channel_pruning"), get_technique("quantization")])
    assert flat.expressed(plan_of(taken[:2], "int8", 3)) is None
    # A unit whose layers the plan sets differently cannot be said either.
    wide = SearchSpace(
        [get_technique("channel_pruning"), get_technique("quantization")],
        {},
        {"channel_pruning": "per-block"},
        {"channel_pruning": {"b1": ["b1_conv", "x_conv"], "b4": ["b4_conv"]}},
    )
    assert wide.expressed(plan_of(taken[:2], "int8", 3)) is None
    both = [replace(taken[1], layers=("b1_conv", "x_conv")), taken[0]]
    assert wide.expressed(plan_of(both, "int8", 3)) is not None


def test_profile_plans_run_after_the_recipes_once_and_survive_a_crash(tmp_path: Any) -> None:
    import io
    import json

    from optuna.trial import TrialState
    from rich.console import Console

    from devicefit.config import StudyConfig
    from devicefit.evaluators.metrics import get_metric
    from devicefit.search import attrs
    from devicefit.search.greedy_plan import add_profile_plans
    from devicefit.search.run import build_space
    from devicefit.search.study import (
        COMBINED,
        create_study,
        enqueue_next_fixed,
        recover_interrupted,
        study_info,
    )

    config = StudyConfig(task="digits", techniques=("channel_pruning", "lowrank"))
    space = build_space(config)
    folder = tmp_path / "s"
    study = create_study(
        config,
        folder,
        get_metric("accuracy"),
        1.0,
        "digits",
        space.recipe_params({"channel_pruning": {"ratio": 0.3}, "lowrank": {"rank_ratio": 0.5}}),
        space.combined_settings(),
    )
    (folder / attrs.SENSITIVITY_FILE).write_text(json.dumps({"points": POINTS, "complete": True}))
    profiles = {"local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}}
    (folder / attrs.DEVICE_PROFILE_FILE).write_text(json.dumps(profiles))
    add_profile_plans(study, folder, space, Console(file=io.StringIO()))
    add_profile_plans(study, folder, space, Console(file=io.StringIO()))  # once only
    kinds = [next(iter(s["attrs"].items())) for s in study_info(study)["fixed_trials"]]
    assert kinds == [
        ("baseline", "float32"),
        ("baseline", "float16"),
        ("baseline", "int8"),
        ("recipe", "channel_pruning"),
        ("recipe", "lowrank"),
        ("profile_plan", "greedy-1x"),
        ("profile_plan", "greedy-3x"),
        ("profile_plan", "greedy-8x"),
        ("profile_plan", "greedy-0.3x"),
        ("profile_plan", "greedy-1x-b2-0.75"),
        ("recipe", COMBINED),
    ]
    for _ in range(6):  # the baselines and recipes run and finish; greedy-1x is enqueued
        enqueue_next_fixed(study)
        trial = study.ask()
        if attrs.PROFILE_PLAN not in trial.user_attrs:
            study.tell(trial, state=TrialState.FAIL)
    assert trial.user_attrs[attrs.PROFILE_PLAN] == "greedy-1x"
    made = study_info(study)["fixed_trials"][5]["plan"]
    assert trial.user_attrs[attrs.PLAN] == made
    # The driver died while it ran: its re-run builds the same plan.
    assert recover_interrupted(study, "driver died") == [trial.number]
    rerun = study.ask()
    assert rerun.user_attrs[attrs.PROFILE_PLAN] == "greedy-1x"
    assert rerun.user_attrs[attrs.PLAN] == made


def test_an_int8_plan_is_ranked_on_the_int8_file_s_times() -> None:
    # Two units whose float32 times favour b1, whose int8 times favour b2.
    points = [
        {**_point("b1", "channel_pruning", "mild", 0.25, 0.1, 2.0), "macs_kept": {"c1": 0.5}},
        {**_point("b2", "channel_pruning", "mild", 0.25, 0.1, 1.0), "macs_kept": {"c2": 0.5}},
    ]
    profiles = {
        "local": {
            "float32": {"median_ms": 2.0, "layers": {"c1": 4.0, "c2": 2.0}},
            "int8": {"median_ms": 0.5, "layers": {"c1": 0.1, "c2": 0.4}},
        }
    }
    (spec, *_) = greedy_plans({"points": points}, profiles, "local", budget=0.1, epochs=3)
    assert [c["unit"] for c in spec["choices"]] == ["b2"]  # only one fits; int8 says b2
    assert spec["choices"][0]["saved_ms"] == 0.2  # half of c2's 0.4 ms in the int8 file
    (flat, *_) = greedy_plans(
        {"points": points}, profiles, "local", budget=0.1, epochs=3, modes=("float32",)
    )
    assert [c["unit"] for c in flat["choices"]] == ["b1"]


# A unit whose cuts cost far more before fine-tuning than the 1-8x allowances: stronger
# plans only come from the climb.
DEEP = [
    _point("b1", "lowrank", "mild", 0.75, 0.5, 0.2),
    _point("b2", "channel_pruning", "mild", 0.25, 6.0, 1.0),
    _point("b2", "channel_pruning", "strong", 0.7, 30.0, 3.0),
    _point("b3", "channel_pruning", "strong", 0.7, 90.0, 2.0),
]


def test_stronger_plans_wait_on_the_plan_before_them_and_stop_when_nothing_is_added() -> None:
    profiles = {"local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}}
    specs = greedy_plans({"points": DEEP}, profiles, "local", budget=1.0, epochs=3)
    names = [s["attrs"]["profile_plan"] for s in specs]
    # 1x and 3x take only b1 (the same plan: once); 8x adds b2 mild; 50x b2 strong (20x
    # adds nothing new); 125x b3 too; 300x has nothing left to add. Each step of the climb
    # changes one unit's setting: between the two, that setting half-way.
    assert names == [
        "greedy-1x",
        "greedy-8x",
        "greedy-50x",
        "greedy-125x",
        "greedy-50x-b2-0.475",
        "greedy-125x-b3-0.35",
    ]
    assert [s.get("after") for s in specs] == [None, None, "greedy-8x", "greedy-50x", None, None]
    assert specs[4]["between"] == ["greedy-8x", "greedy-50x"]
    assert specs[5]["between"] == ["greedy-50x", "greedy-125x"]
    units = [{c["unit"]: c["level"] for c in s["choices"]} for s in specs]
    assert units[2] == {"b1": "mild", "b2": "strong"}
    assert units[3] == {"b1": "mild", "b2": "strong", "b3": "strong"}


def _climb_study(points: list[dict[str, Any]] = DEEP) -> Any:
    """A study whose fixed trials are two one-technique recipes, the plans of ``points``,
    then the combined recipe; the float32 baseline has run (10 ms)."""
    import optuna

    from devicefit.search import attrs
    from devicefit.search.study import COMBINED, set_study_info

    profiles = {"local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}}
    specs = greedy_plans({"points": points}, profiles, "local", budget=1.0, epochs=3)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr(attrs.STUDY_KEY, {})
    recipes = [
        {"attrs": {attrs.RECIPE: name}, "params": {f"{name}.x": 1}}
        for name in ("channel_pruning", "lowrank")
    ]
    fixed = [*recipes, *({k: v for k, v in s.items() if k != "choices"} for s in specs)]
    fixed.append({"attrs": {attrs.RECIPE: COMBINED}, "params": {}, "combine": True})
    set_study_info(study, fixed_trials=fixed)
    study.enqueue_trial({}, user_attrs={attrs.BASELINE: "float32"})
    baseline = study.ask()
    baseline.set_constraint(attrs.CONSTRAINT, 0.0)
    study.tell(baseline, [1.0, 10.0])
    return study


def _run_next(study: Any, drop: float | None) -> str:
    """Enqueue and run the next fixed trial at 5 ms: told within (drop <= 0) or over the
    budget, or failed (None); returns its recipe or profile plan."""
    from optuna.trial import TrialState

    from devicefit.search import attrs
    from devicefit.search.study import enqueue_next_fixed

    assert enqueue_next_fixed(study)
    trial = study.ask()
    if drop is None:
        study.tell(trial, state=TrialState.FAIL)
    else:
        trial.set_constraint(attrs.CONSTRAINT, drop)
        study.tell(trial, [1.0, 5.0])
    return trial.user_attrs.get(attrs.PROFILE_PLAN) or trial.user_attrs[attrs.RECIPE]


def test_the_climb_goes_on_while_plans_hold_the_budget_and_holds_nothing_back() -> None:
    from devicefit.search import attrs
    from devicefit.search.study import COMBINED, enqueue_next_fixed

    study = _climb_study()
    ran = [_run_next(study, -0.1) for _ in range(5)]
    assert ran == ["channel_pruning", "lowrank", "greedy-1x", "greedy-8x", "greedy-50x"]
    # greedy-50x held: greedy-125x is enqueued. While it runs, the combined recipe does
    # not wait for it, and nothing is enqueued twice.
    assert enqueue_next_fixed(study)
    running = study.ask()
    assert running.user_attrs[attrs.PROFILE_PLAN] == "greedy-125x"
    assert enqueue_next_fixed(study)
    assert study.ask().user_attrs[attrs.RECIPE] == COMBINED
    assert not enqueue_next_fixed(study)


def test_the_climb_stops_at_the_first_plan_over_the_budget_or_failed() -> None:
    from devicefit.search import attrs
    from devicefit.search.study import COMBINED

    for last in (0.5, None):  # over the budget; failed
        study = _climb_study()
        ran = [_run_next(study, -0.1) for _ in range(3)]
        assert ran == ["channel_pruning", "lowrank", "greedy-1x"]
        assert _run_next(study, last) == "greedy-8x"
        # greedy-50x and greedy-125x (which waits on it) are passed over: the combined
        # recipe comes next.
        assert _run_next(study, 0.0) == COMBINED
        plans = [t.user_attrs.get(attrs.PROFILE_PLAN) for t in study.trials]
        assert "greedy-50x" not in plans and "greedy-125x" not in plans


def _ask_greedy_8x(study: Any) -> Any:
    """Run the recipes and greedy-1x within the budget; greedy-8x, asked and not told."""
    from devicefit.search import attrs
    from devicefit.search.study import enqueue_next_fixed

    for _ in range(3):
        _run_next(study, -0.1)
    assert enqueue_next_fixed(study)
    trial = study.ask()
    assert trial.user_attrs[attrs.PROFILE_PLAN] == "greedy-8x"
    return trial


def test_a_plan_within_the_metric_budget_climbs_on_over_a_device_limit() -> None:
    from devicefit.search import attrs

    study = _climb_study()
    trial = _ask_greedy_8x(study)
    trial.set_constraint(attrs.CONSTRAINT, -0.2)
    trial.set_constraint("peak_memory_mb@local", 3.0)  # over a memory limit
    study.tell(trial, [1.0, 5.0])
    assert _run_next(study, 0.0) == "greedy-50x"


def test_a_plan_left_running_by_a_dead_driver_is_rerun_and_the_climb_resumes() -> None:
    from devicefit.search import attrs
    from devicefit.search.study import COMBINED, recover_interrupted

    study = _climb_study()
    stuck = _ask_greedy_8x(study)
    assert recover_interrupted(study, "driver died") == [stuck.number]
    rerun = study.ask()  # the re-run enqueued by the recovery
    assert rerun.user_attrs[attrs.PROFILE_PLAN] == "greedy-8x"
    rerun.set_constraint(attrs.CONSTRAINT, 0.0)
    study.tell(rerun, [1.0, 5.0])
    assert _run_next(study, -0.1) == "greedy-50x"
    assert _run_next(study, 0.3) == "greedy-125x"
    assert _run_next(study, 0.0) == "greedy-125x-b3-0.35"  # b3 half-way, between the two
    assert _run_next(study, 0.0) == COMBINED


def test_when_no_step_fits_the_first_allowances_the_first_plan_made_runs() -> None:
    profiles = {"local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}}
    costly = [_point("b1", "channel_pruning", "strong", 0.7, 15.0, 3.0)]
    (spec,) = greedy_plans({"points": costly}, profiles, "local", budget=1.0, epochs=3)
    assert spec["attrs"]["profile_plan"] == "greedy-20x" and "after" not in spec


# Units whose cuts the climb takes far apart: 50x takes b3, 125x b1, 300x b1, b2 and b3.
SPREAD = [
    _point("b1", "channel_pruning", "strong", 0.7, 100.0, 3.0),
    _point("b2", "channel_pruning", "strong", 0.7, 60.0, 1.0),
    _point("b3", "channel_pruning", "strong", 0.7, 40.0, 0.5),
    _point("b4", "channel_pruning", "strong", 0.7, 150.0, 1.0),
]


def test_between_two_plans_of_the_climb_a_plan_at_the_middle_and_then_in_the_open_half() -> None:
    profiles = {"local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}}
    specs = greedy_plans({"points": SPREAD}, profiles, "local", budget=1.0, epochs=3)
    made = {
        s["attrs"]["profile_plan"]: (
            s.get("between"),
            sorted(c["unit"] for c in s["choices"]),
        )
        for s in specs
    }
    assert list(made)[:3] == ["greedy-50x", "greedy-125x", "greedy-300x"]  # the climb first
    # sqrt(50 * 125) = 79: b2 alone. sqrt(125 * 300) = 194: b1 and b2. In the lower half
    # of that gap, 156x: b1 and b3; the upper half's plan (241x) is the 300x one again.
    assert made["greedy-79.1x"] == (["greedy-50x", "greedy-125x"], ["b2"])
    assert made["greedy-194x"] == (["greedy-125x", "greedy-300x"], ["b1", "b2"])
    assert made["greedy-156x"] == (["greedy-125x", "greedy-194x"], ["b1", "b3"])
    # Where two neighbours differ in one unit's setting (b3 at 0.7 or not at all), it
    # half-way too.
    assert made["greedy-156x-b3-0.35"] == (["greedy-125x", "greedy-156x"], ["b1", "b3"])
    assert made["greedy-300x-b3-0.35"] == (["greedy-194x", "greedy-300x"], ["b1", "b2", "b3"])
    assert len(made) == 8


def test_the_climb_bisects_where_it_ended() -> None:
    from devicefit.search import attrs
    from devicefit.search.study import COMBINED

    for middle, then in (
        (0.4, ["greedy-156x", COMBINED]),
        (-0.1, ["greedy-300x-b3-0.35", COMBINED]),
    ):
        study = _climb_study(SPREAD)
        ran = [_run_next(study, -0.1) for _ in range(4)]
        assert ran == ["channel_pruning", "lowrank", "greedy-50x", "greedy-125x"]
        assert _run_next(study, 3.3) == "greedy-300x"  # over the budget: the climb ends
        # Between 125x (held) and 300x (did not): 194x. When it misses too, 156x; when it
        # holds, the half above it has no bisecting plan of its own, only 300x with b3
        # half-way (the one unit 194x and 300x differ in).
        assert _run_next(study, middle) == "greedy-194x"
        assert [_run_next(study, -0.1) for _ in then] == then
        plans = {t.user_attrs.get(attrs.PROFILE_PLAN) for t in study.trials}
        assert "greedy-79.1x" not in plans  # 125x held: nothing between 50x and 125x


def test_a_bisection_waits_for_the_re_run_of_a_plan_a_dead_driver_left() -> None:
    from devicefit.search import attrs
    from devicefit.search.study import COMBINED, enqueue_next_fixed, recover_interrupted

    study = _climb_study(SPREAD)
    for _ in range(4):
        _run_next(study, -0.1)
    assert enqueue_next_fixed(study)
    stuck = study.ask()
    assert stuck.user_attrs[attrs.PROFILE_PLAN] == "greedy-300x"
    recover_interrupted(study, "driver died")  # 300x failed, its re-run enqueued
    rerun = study.ask()
    assert rerun.user_attrs[attrs.PROFILE_PLAN] == "greedy-300x"
    # The failed run does not count as missing the budget while its re-run is out: the
    # combined recipe comes next, not greedy-194x.
    assert enqueue_next_fixed(study)
    assert study.ask().user_attrs.get(attrs.RECIPE) == COMBINED
    rerun.set_constraint(attrs.CONSTRAINT, -0.1)
    study.tell(rerun, [1.0, 5.0])  # the re-run held: nothing to bisect
    assert not enqueue_next_fixed(study)


def test_a_plan_that_saves_more_of_the_time_fine_tunes_longer() -> None:
    light = greedy_choices(POINTS, "local", allowance=0.5, floor=0.01)  # saves 2.5 ms
    assert plan_of(light, "int8", 3).finetune_epochs == 3  # the untouched time unknown
    # 2.5 of 20 ms: an eighth of the time, 3 * 2 * 0.125 rounded up = 1 more epoch.
    assert plan_of(light, "int8", 3, whole_ms=20.0).finetune_epochs == 4
    # Half the time: twice the structural share, 3 more; all of it: at most 2 * 3 more.
    assert plan_of(light, "int8", 3, whole_ms=5.0).finetune_epochs == 6
    assert plan_of(light, "int8", 3, whole_ms=2.5).finetune_epochs == 9
    assert plan_of([], "int8", 3, whole_ms=2.5).finetune_epochs == 0  # nothing to recover
    # Along the climb the plans save more and so fine-tune at least as long.
    # (the int8 file's layers were not timed: the plans save float32 time, out of 10 ms)
    profiles = {"local": {"float32": {"median_ms": 10.0}, "int8": {"median_ms": 5.0}}}
    specs = greedy_plans({"points": DEEP}, profiles, "local", budget=1.0, epochs=3)
    specs = [s for s in specs if "between" not in s]  # the climb's own plans
    epochs = [s["plan"]["finetune_epochs"] for s in specs]
    saved = [sum(c["saved_ms"] for c in s["choices"]) for s in specs]
    assert epochs == [3 + math.ceil(3 * 2 * ms / 10.0) for ms in saved]
    assert epochs == sorted(epochs) and epochs[0] < epochs[-1]


def test_a_longer_plan_is_said_to_the_sampler_at_the_space_s_most_epochs_and_runs_its_own() -> None:
    import optuna

    from devicefit.spaces.space import SearchSpace

    space = _per_block_space()  # epochs 0 to 3
    taken = greedy_choices(POINTS, "local", allowance=0.5, floor=0.01)
    longer = plan_of(taken, "int8", 3, whole_ms=5.0)
    assert longer.finetune_epochs == 6
    # Outside its epochs the space cannot say the plan as it is (the sampler would draw
    # its epochs afresh) ...
    assert space.expressed(longer) is None
    # ... so the sampler learns its settings at the space's most epochs, and the plan
    # runs with its own.
    said = said_to_sampler(space, longer)
    assert said is not None
    params, run = said
    assert params["finetune.epochs"] == 3 and run.finetune_epochs == 6
    drawn = space.sample(optuna.trial.FixedTrial(params), leave_out=False)
    assert replace(drawn, finetune_epochs=6) == run
    flat = SearchSpace([get_technique("channel_pruning"), get_technique("quantization")])
    assert said_to_sampler(flat, longer) is None  # per-unit settings: not said at all


def test_a_plan_s_share_of_time_is_read_in_the_file_its_savings_were_timed_in() -> None:
    profile: dict[str, Any] = {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}
    # The int8 file's layers were not timed: the savings are float32 ones, and so is the
    # whole they are a share of.
    assert untouched_ms(profile, "int8") == 2.0
    profile["int8"]["layers"] = [{"name": "b1_conv", "ms": 0.1}]
    assert untouched_ms(profile, "int8") == 0.5
    assert untouched_ms(profile, "float32") == 2.0
    assert untouched_ms({}, "int8") is None


def _counted(point: dict, kept: dict[str, float], layer_ms: dict[str, float]) -> dict:
    """``point`` with its shares of MACs kept and the saving they predict on ``layer_ms``."""
    saved = sum(layer_ms[name] * (1.0 - share) for name, share in kept.items())
    return {**point, "macs_kept": kept, "saved_ms": {"local": saved}}


# b1's convolution takes 4 ms and feeds b2's, 2 ms. A channel cut on b1 keeps half of both;
# a smaller kernel keeps 30% of b1's.
LAYER_MS = {"b1_conv": 4.0, "b2_conv": 2.0, "b3_conv": 2.0}
CUT = _counted(
    _point("b1", "channel_pruning", "medium", 0.5, 0.1, 0.0),
    {"b1_conv": 0.5, "b2_conv": 0.5},
    LAYER_MS,
)  # saves 3.0 ms
SHRINK = _counted(
    _point("b1", "kernel_reduction", "mild", 1, 0.1, 0.0), {"b1_conv": 0.3}, LAYER_MS
)  # saves 2.8 ms alone, 1.4 ms once the cut has halved b1_conv


def test_a_unit_holds_a_channel_cut_and_a_smaller_kernel_together_when_layer_times_say_so() -> None:
    taken = greedy_choices([CUT, SHRINK], "local", 1.0, 0.01, LAYER_MS)
    assert [(c.unit, c.technique) for c in taken] == [
        ("b1", "channel_pruning"),
        ("b1", "kernel_reduction"),
    ]
    # Without the layer times nothing tells what the second saves on what the first left:
    # one technique per unit, as before.
    (alone,) = greedy_choices([CUT, SHRINK], "local", 1.0, 0.01)
    assert alone.technique == "channel_pruning"
    # The plan applies both to b1's layers, the cut first.
    plan = plan_of(taken, "float32", epochs=3)
    assert [s.technique for s in plan.steps] == [
        "channel_pruning",
        "kernel_reduction",
        "quantization",
    ]
    assert plan.steps[0].params[PER_LAYER] == {"b1_conv": {"ratio": 0.5}}
    assert plan.steps[1].params[PER_LAYER] == {"b1_conv": {"shrink": 1}}
    # Together they save 4.4 ms of the 8 (not 3.0 + 2.8): 55% earns 4 more epochs of 3, where
    # the summed 72.5% would earn 5.
    assert plan_saved_ms(taken, LAYER_MS) == pytest.approx(4.4)
    assert plan_of(taken, "float32", 3, whole_ms=8.0, layer_ms=LAYER_MS).finetune_epochs == 7


def test_a_second_technique_is_ranked_on_the_time_the_first_left() -> None:
    # After the cut (30 ms per point), the smaller kernel on b1 saves 1.4 ms for 0.1 points
    # (14 ms per point; 28 on the untouched b1). Only one more step fits; b3's goes first
    # when it beats 14 ms per point, else the kernel's.
    def b3(saved: float) -> dict:
        return _counted(
            _point("b3", "lowrank", "medium", 0.5, 0.1, 0.0),
            {"b3_conv": 1.0 - saved / LAYER_MS["b3_conv"]},
            LAYER_MS,
        )

    taken = greedy_choices([CUT, SHRINK, b3(1.5)], "local", 0.2, 0.01, LAYER_MS)
    assert [(c.unit, c.technique) for c in taken] == [("b1", "channel_pruning"), ("b3", "lowrank")]
    taken = greedy_choices([CUT, SHRINK, b3(1.3)], "local", 0.2, 0.01, LAYER_MS)
    assert [(c.unit, c.technique) for c in taken] == [
        ("b1", "channel_pruning"),
        ("b1", "kernel_reduction"),
    ]


def test_depth_pruning_never_shares_a_unit() -> None:
    gone = _counted(
        _point("b1", "depth_pruning", "mild", 1.0, 0.05, 0.0), {"b1_conv": 0.0}, LAYER_MS
    )  # saves 4.0 ms at 80 ms per point: first
    # Beside it, the cut would save b2's halved 1.0 ms more; it is never set beside it, and
    # alone neither the cut nor the kernel saves more than the unit's removal.
    taken = greedy_choices([gone, CUT, SHRINK], "local", 5.0, 0.01, LAYER_MS)
    assert [c.technique for c in taken] == ["depth_pruning"]


def test_stacked_plans_come_from_the_device_profile_s_layer_times() -> None:
    profiles = {"local": {"float32": {"median_ms": 8.0, "layers": LAYER_MS}}}
    specs = greedy_plans({"points": [CUT, SHRINK]}, profiles, "local", budget=1.0, epochs=3)
    assert [(c["unit"], c["technique"]) for c in specs[0]["choices"]] == [
        ("b1", "channel_pruning"),
        ("b1", "kernel_reduction"),
    ]
    assert all("kept" not in c for c in specs[0]["choices"])  # the stored choices stay small


def test_between_two_plans_that_differ_in_one_setting_come_the_settings_in_between() -> None:
    mild = Choice("b1", ("b1_conv",), "kernel_reduction", "mild", 1, 0.1, 1.0)
    cut = Choice("b2", ("b2_conv",), "channel_pruning", "medium", 0.5, 0.1, 1.0)
    strong = replace(mild, level="strong", setting=4)
    found = between_settings([cut, mild], [cut, strong])
    # Every integer between, nearest the plan that held first; the rest as the stronger plan.
    assert [(unit, value) for unit, value, _ in found] == [("b1", 2), ("b1", 3)]
    assert found[0][2] == [cut, replace(strong, setting=2, level="at 2")]
    # A fractional setting gets the middle; a unit the lower plan left alone starts at the
    # technique's identity (no shrink).
    deeper = replace(cut, setting=0.7)
    assert [v for _, v, _ in between_settings([cut], [deeper])] == [0.6]
    assert [v for _, v, _ in between_settings([cut], [cut, strong])] == [1, 2, 3]
    # Two differences, or none, or a setting that is no number: nothing in between.
    assert between_settings([cut, mild], [deeper, strong]) == []
    assert between_settings([cut], [cut]) == []
    assert between_settings([replace(cut, setting="a")], [replace(cut, setting="b")]) == []


def test_where_the_climb_ends_in_one_unit_s_setting_the_settings_between_run_in_turn() -> None:
    points = [
        _point("b1", "kernel_reduction", "mild", 1, 0.3, 1.0),
        _point("b1", "kernel_reduction", "strong", 4, 12.0, 3.0),  # over 8 budgets
    ]
    profiles = {"local": {"float32": {"median_ms": 4.0}}}
    specs = greedy_plans({"points": points}, profiles, "local", budget=1.0, epochs=3)
    by_name = {s["attrs"]["profile_plan"]: s for s in specs}
    # greedy-1x shrinks b1's kernel by 1, greedy-20x by 4: between them, 2 once greedy-1x
    # held and greedy-20x did not, then 3 once 2 held too.
    assert by_name["greedy-20x"]["after"] == "greedy-1x"
    first, second = by_name["greedy-20x-b1-2"], by_name["greedy-20x-b1-3"]
    assert first["between"] == ["greedy-1x", "greedy-20x"]
    assert second["between"] == ["greedy-20x-b1-2", "greedy-20x"]
    for spec, shrink in ((first, 2), (second, 3)):
        (step, _) = Plan.from_dict(spec["plan"]).steps
        assert step.params[PER_LAYER] == {"b1_conv": {"shrink": shrink}}
    assert len(specs) == len({s["plan"]["steps"].__repr__() for s in specs})  # all distinct


def test_when_the_first_plan_misses_the_budget_milder_plans_run_below_it() -> None:
    from devicefit.search import attrs
    from devicefit.search.study import COMBINED

    # POINTS: greedy-1x takes b4, b1 mild and b2; greedy-0.3x only b4 and b1 mild. The
    # stronger plans miss; greedy-0.3x holds: between it and 1x, b2's setting half-way.
    below = [("greedy-0.3x", -0.1), ("greedy-1x-b2-0.75", -0.1)]
    for first, then in ((-0.1, []), (0.4, below), (None, below)):  # held; over; failed
        study = _climb_study(POINTS)
        assert [_run_next(study, -0.1) for _ in range(2)] == ["channel_pruning", "lowrank"]
        assert _run_next(study, first) == "greedy-1x"
        runs = [("greedy-3x", 0.5), ("greedy-8x", 0.5), *then, (COMBINED, 0.0)]
        assert [_run_next(study, drop) for _, drop in runs] == [name for name, _ in runs]
    specs = {s["attrs"][attrs.PROFILE_PLAN]: s for s in _plans(POINTS)}
    assert specs["greedy-0.3x"]["unless"] == "greedy-1x"
    assert specs["greedy-1x-b2-0.75"]["between"] == ["greedy-0.3x", "greedy-1x"]


def test_a_milder_plan_that_misses_too_leads_to_a_milder_one_still() -> None:
    from devicefit.search import attrs
    from devicefit.search.study import COMBINED

    # b1's cut alone costs 0.05 of the budget, b2's 0.2, b3's 0.7: 1x takes all three,
    # 0.3x b1 and b2, 0.1x b1 only.
    points = [
        _point("b1", "channel_pruning", "strong", 0.7, 0.05, 1.0),
        _point("b2", "channel_pruning", "strong", 0.7, 0.2, 1.0),
        _point("b3", "channel_pruning", "strong", 0.7, 0.7, 1.0),
    ]
    specs = {s["attrs"][attrs.PROFILE_PLAN]: s for s in _plans(points)}
    assert specs["greedy-0.1x"]["unless"] == "greedy-0.3x"
    assert [c["unit"] for c in specs["greedy-0.1x"]["choices"]] == ["b1"]
    study = _climb_study(points)
    assert [_run_next(study, -0.1) for _ in range(2)] == ["channel_pruning", "lowrank"]
    assert [_run_next(study, 0.5) for _ in range(2)] == ["greedy-1x", "greedy-0.3x"]
    assert _run_next(study, 0.5) == "greedy-0.1x"  # missed as well: nothing milder is made
    assert _run_next(study, 0.0) == COMBINED


def _plans(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    profiles = {"local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}}
    return greedy_plans({"points": points}, profiles, "local", budget=1.0, epochs=3)

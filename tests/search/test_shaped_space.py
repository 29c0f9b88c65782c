"""The space shaped by the profiles: units that save little are left out, ranges end where
the drop before fine-tuning is past reach, and only the sampler's trials are shaped."""

from __future__ import annotations

from typing import Any

import optuna

from devicefit.search.shaped_space import (
    ALLOWANCE,
    MIN_TIME_SHARE,
    Decision,
    held_choices,
    shape,
)
from devicefit.spaces import get_technique
from devicefit.spaces.base import PER_LAYER
from devicefit.spaces.space import SearchSpace

SETTINGS = {"mild": 0.25, "medium": 0.5, "strong": 0.7}


def _points(unit: str, drops: tuple[float, float, float], saved: float) -> list[dict[str, Any]]:
    """Channel pruning of ``unit`` at the three levels; the strong one saves ``saved`` ms."""
    return [
        {
            "unit": unit,
            "layers": [f"{unit}_conv"],
            "technique": "channel_pruning",
            "level": level,
            "setting": SETTINGS[level],
            "drop": drop,
            "error": None,
            "saved_ms": {"local": saved * SETTINGS[level] / 0.7},
        }
        for level, drop in zip(SETTINGS, drops, strict=True)
    ]


# Drops in eighths of the allowance (K budgets each): with budget 1 the allowance is 8 K;
# the untouched model runs 10 ms, so a unit must save 0.2 ms.
K = ALLOWANCE / 8.0


def _scaled(drops: tuple[float, float, float]) -> tuple[float, float, float]:
    return (drops[0] * K, drops[1] * K, drops[2] * K)


PROFILE = {
    "points": [
        *_points("b1", _scaled((0.5, 3.0, 12.0)), saved=3.0),  # strong is past reach
        *_points("b2", _scaled((0.1, 0.2, 0.4)), saved=2.0),  # tolerant: untouched range
        *_points("b3", _scaled((0.1, 0.2, 0.4)), saved=0.1),  # saves under 2% of the time
        *_points("b4", _scaled((9.0, 10.0, 11.0)), saved=1.0),  # even the mildest is past reach
    ]
}
UNITS = {"channel_pruning": {u: [f"{u}_conv"] for u in ("b1", "b2", "b3", "b4")}}


def test_per_unit_decisions() -> None:
    decisions = shape(PROFILE, "local", 10.0, 1.0, UNITS, ["channel_pruning", "quantization"])
    by_unit = {d.unit: d for d in decisions}
    assert set(by_unit) == {"b1", "b3", "b4"}
    # b1: strong (12 K) is the first over 8 K: the range ends at the level before it.
    assert by_unit["b1"].action == "range" and by_unit["b1"].end == 0.5
    assert (by_unit["b1"].param, by_unit["b1"].bound) == ("ratio", "high")
    assert by_unit["b3"].action == "left out" and "1.0%" in by_unit["b3"].why
    assert by_unit["b4"].action == "left out" and "mildest" in by_unit["b4"].why
    assert MIN_TIME_SHARE * 10.0 > 0.1 and 9.0 * K > ALLOWANCE
    tight = {d.unit: d.end for d in shape(PROFILE, "local", 10.0, 0.3, UNITS, ["channel_pruning"])}
    assert tight["b1"] == 0.25  # medium (3 K) is over 2.4 K


def test_global_decisions_sum_the_units() -> None:
    # All four units at once, summed: mild 9.7 K, medium 13.4 K, strong 23.8 K.
    (decision,) = shape(PROFILE, "local", 10.0, 2.0, {}, ["channel_pruning"])  # allowance 16 K
    assert (decision.unit, decision.action, decision.end) == (None, "range", 0.5)
    assert shape(PROFILE, "local", 10.0, 1.25, {}, ["channel_pruning"])[0].end == 0.25
    # Mild over 8 K * 0.5 already: a global range keeps its mildest setting.
    assert shape(PROFILE, "local", 10.0, 0.5, {}, ["channel_pruning"])[0].end == 0.25
    assert shape(PROFILE, "local", 10.0, 10.0, {}, ["channel_pruning"]) == []  # all within
    (out,) = shape(PROFILE, "local", 1000.0, 1.0, {}, ["channel_pruning"])
    assert out.action == "left out"  # 6.1 ms of 1000 ms
    # Every unit left out: the technique is not searched at all.
    alone = {"channel_pruning": {"b3": ["b3_conv"]}}
    decided = shape(PROFILE, "local", 10.0, 1.0, alone, ["channel_pruning"])
    assert [(d.unit, d.action) for d in decided] == [("b3", "left out"), (None, "left out")]
    # Low-rank ranges are not ended (its ratio means another thing under rank_rule=energy).
    lowrank = [{**p, "technique": "lowrank"} for p in PROFILE["points"]]
    assert all(
        d.action == "left out"
        for d in shape(
            {"points": lowrank},
            "local",
            10.0,
            1.0,
            {"lowrank": UNITS["channel_pruning"]},
            ["lowrank"],
        )
    )


def _space() -> SearchSpace:
    techniques = [get_technique("channel_pruning"), get_technique("quantization")]
    return SearchSpace(techniques, {}, {"channel_pruning": "per-block"}, UNITS)


def _draws(space: SearchSpace, leave_out: bool, n: int = 40) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plans = []
    for _ in range(n):
        study.enqueue_trial({"channel_pruning.on": True})
        trial = study.ask()
        step = space.sample(trial, leave_out=leave_out).step("channel_pruning")
        assert step is not None
        plans.append(step.params[PER_LAYER])
        study.tell(trial, 0.0)
    return plans


def test_ranges_end_for_every_trial_units_are_left_out_of_sampled_ones() -> None:
    space = _space()
    decisions = shape(PROFILE, "local", 10.0, 0.3, UNITS, ["channel_pruning"])  # b1 ends 0.25
    changed = space.shape([d.to_dict() for d in decisions])
    assert {(d["unit"], d["action"]) for d in changed} == {
        ("b1", "range"),
        ("b3", "left out"),
        ("b4", "left out"),
    }
    # A range that already ends there is no change, and is not reported as one.
    full = {"technique": "channel_pruning", "unit": "b2", "action": "range", "why": ""}
    assert space.shape([{**full, "end": 0.9, "param": "ratio", "bound": "high"}]) == []
    sampled = _draws(space, leave_out=True)
    assert all(p["b3_conv"] == {"ratio": 0.0} for p in sampled)  # left out: untouched
    assert max(p["b1_conv"]["ratio"] for p in sampled) <= 0.25
    assert max(p["b2_conv"]["ratio"] for p in sampled) > 0.5  # its own range is whole
    recipes = _draws(space, leave_out=False)  # every unit drawn, from the same ranges
    assert max(p["b1_conv"]["ratio"] for p in recipes) <= 0.25
    assert any(p["b3_conv"]["ratio"] > 0 for p in recipes)


def test_a_technique_left_out_is_off_in_shaped_trials() -> None:
    space = _space()
    space.shape([{"technique": "channel_pruning", "unit": None, "action": "left out", "why": ""}])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plans = [space.sample(study.ask()) for _ in range(10)]
    assert all(p.step("channel_pruning") is None for p in plans)


def test_a_range_fine_tuning_can_win_back_stays_open_to_the_sampler() -> None:
    # SRCNN's kernel cuts at a 0.3 dB budget: summed over its three convolutions, the
    # medium and strong settings lose 2.5 and 12 dB before fine-tuning (more than 8
    # budgets), yet 3-1-1 kernels held the budget after it. The climb's plans may spend 300
    # budgets: the sampler's range is not ended short of them.
    points = [
        {
            "unit": unit,
            "layers": [f"{unit}_conv"],
            "technique": "kernel_reduction",
            "level": level,
            "setting": setting,
            "drop": drop,
            "error": None,
            "saved_ms": {"local": saved},
        }
        for unit in ("b1", "b2", "b3")
        for level, setting, drop, saved in (
            ("mild", 1, 0.2, 1.0),
            ("medium", 2, 2.5 / 3, 2.0),
            ("strong", 4, 4.0, 3.0),
        )
    ]
    assert shape({"points": points}, "local", 6.0, 0.3, {}, ["kernel_reduction"]) == []
    (ended,) = shape(
        {"points": points}, "local", 6.0, 12.0 / ALLOWANCE / 2, {}, ["kernel_reduction"]
    )
    assert (ended.action, ended.end) == ("range", 2)  # strong's 12 dB past the allowance


def test_the_ranking_the_profile_measured_with_is_held_for_the_sampler() -> None:
    # The profile's channel-pruning drops hold for the ranking it pruned by (activation):
    # on SRCNN, L1 ranking loses 25 dB at every ratio where activation loses 0.0-1.0 dB.
    decisions = shape(PROFILE, "local", 10.0, 1.0, UNITS, ["channel_pruning"])
    (held,) = held_choices(PROFILE, decisions)
    assert (held.technique, held.action, held.param) == ("channel_pruning", "held", "importance")
    assert held.end == get_technique("channel_pruning").identity_params()["importance"]
    space = _space()
    assert space.shape([held.to_dict()]) == [held.to_dict()]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        study.enqueue_trial({"channel_pruning.on": True})
        step = space.sample(study.ask()).step("channel_pruning")
        assert step is not None and step.params["importance"] == held.end
    # Unshaped, the sampler draws every ranking.
    drawn = {
        step.params["importance"]
        for step in (
            p.step("channel_pruning") for p in (_space().sample(study.ask()) for _ in range(40))
        )
        if step is not None
    }
    assert len(drawn) > 1


def test_no_choice_is_held_that_the_study_file_or_the_profile_ruled_out() -> None:
    gone = [Decision("channel_pruning", None, "left out", "no unit saves enough time")]
    assert held_choices(PROFILE, gone) == []
    lowrank = [{**p, "technique": "lowrank"} for p in PROFILE["points"]]
    assert held_choices({"points": lowrank}, []) == []  # its ranges are not ended
    (held,) = held_choices(PROFILE, [])
    techniques = [get_technique("channel_pruning"), get_technique("quantization")]
    chosen = {"channel_pruning": {"importance": ["l1", "bn_scale"]}}
    space = SearchSpace(techniques, chosen, {"channel_pruning": "per-block"}, UNITS)
    assert space.shape([held.to_dict()]) == []  # the study file's choice is obeyed

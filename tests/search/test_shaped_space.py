"""The space shaped by the profiles: units that save little are left out, ranges end where
the drop before fine-tuning is past reach, and only the sampler's trials are shaped."""

from __future__ import annotations

from typing import Any

import optuna

from devicefit.search.shaped_space import ALLOWANCE, MIN_TIME_SHARE, shape
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


# Budget 1, allowance 8; the untouched model runs 10 ms, so a unit must save 0.2 ms.
PROFILE = {
    "points": [
        *_points("b1", (0.5, 3.0, 12.0), saved=3.0),  # strong is past reach
        *_points("b2", (0.1, 0.2, 0.4), saved=2.0),  # tolerant: untouched range
        *_points("b3", (0.1, 0.2, 0.4), saved=0.1),  # saves under 2% of the time
    ]
}
UNITS = {"channel_pruning": {"b1": ["b1_conv"], "b2": ["b2_conv"], "b3": ["b3_conv"]}}


def test_per_unit_decisions() -> None:
    decisions = shape(PROFILE, "local", 10.0, 1.0, UNITS, ["channel_pruning", "quantization"])
    by_unit = {d.unit: d for d in decisions}
    assert set(by_unit) == {"b1", "b3"}
    assert by_unit["b1"].action == "range" and by_unit["b1"].end == 0.7
    assert (by_unit["b1"].param, by_unit["b1"].bound) == ("ratio", "high")
    assert by_unit["b3"].action == "left out" and "1.0%" in by_unit["b3"].why
    assert MIN_TIME_SHARE * 10.0 > 0.1 and 12.0 > ALLOWANCE


def test_global_decisions_sum_the_units() -> None:
    # All three units at once: medium sums to 3.4, strong to 12.8 (past 8): the global
    # ratio ends at the strong setting. Times saved sum to over 2% of the time.
    (decision,) = shape(PROFILE, "local", 10.0, 1.0, {}, ["channel_pruning"])
    assert (decision.unit, decision.action, decision.end) == (None, "range", 0.7)
    tight = shape(PROFILE, "local", 10.0, 0.4, {}, ["channel_pruning"])  # allowance 3.2
    assert tight[0].end == 0.5
    (out,) = shape(PROFILE, "local", 1000.0, 1.0, {}, ["channel_pruning"])
    assert out.action == "left out"  # 5.1 ms of 1000 ms
    # Every unit left out: the technique is not searched at all.
    alone = {"channel_pruning": {"b3": ["b3_conv"]}}
    assert [(d.unit, d.action) for d in shape(PROFILE, "local", 10.0, 1.0, alone, [])] == []
    decided = shape(PROFILE, "local", 10.0, 1.0, alone, ["channel_pruning"])
    assert [(d.unit, d.action) for d in decided] == [("b3", "left out"), (None, "left out")]


def _space() -> SearchSpace:
    techniques = [get_technique("channel_pruning"), get_technique("quantization")]
    return SearchSpace(techniques, {}, {"channel_pruning": "per-block"}, UNITS)


def _draws(space: SearchSpace, shaped: bool, n: int = 40) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plans = []
    for _ in range(n):
        study.enqueue_trial({"channel_pruning.on": True})
        trial = study.ask()
        step = space.sample(trial, shaped=shaped).step("channel_pruning")
        assert step is not None
        plans.append(step.params[PER_LAYER])
        study.tell(trial, 0.0)
    return plans


def test_only_the_sampler_s_trials_are_shaped() -> None:
    space = _space()
    decisions = shape(PROFILE, "local", 10.0, 0.3, UNITS, ["channel_pruning"])  # b1 ends 0.5
    space.shape([d.to_dict() for d in decisions])
    shaped = _draws(space, shaped=True)
    assert all(p["b3_conv"] == {"ratio": 0.0} for p in shaped)  # left out: untouched
    assert max(p["b1_conv"]["ratio"] for p in shaped) <= 0.5
    assert max(p["b2_conv"]["ratio"] for p in shaped) > 0.5  # its own range is whole
    whole = _draws(space, shaped=False)
    assert max(p["b1_conv"]["ratio"] for p in whole) > 0.5
    assert any(p["b3_conv"]["ratio"] > 0 for p in whole)


def test_a_technique_left_out_is_off_in_shaped_trials() -> None:
    space = _space()
    space.shape([{"technique": "channel_pruning", "unit": None, "action": "left out", "why": ""}])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plans = [space.sample(study.ask()) for _ in range(10)]
    assert all(p.step("channel_pruning") is None for p in plans)

"""The profile-guided greedy: most time saved per metric lost first, within an allowance,
one technique per unit; the plans it makes are built as stored."""

from __future__ import annotations

from typing import Any

from devicefit.search.greedy_plan import faster_mode, greedy_choices, greedy_plans, plan_of
from devicefit.spaces import get_technique
from devicefit.spaces.base import PER_LAYER


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
    # A stronger setting of the unit's technique replaces the milder one; never a second
    # technique on the same unit.
    assert by_unit["b1"] == ("channel_pruning", "strong")
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


def test_plans_for_growing_allowances_are_distinct_and_cautious_first() -> None:
    profiles = {"local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}}
    specs = greedy_plans({"points": POINTS}, profiles, "local", budget=1.0, epochs=3)
    names = [s["attrs"]["profile_plan"] for s in specs]
    assert names == ["greedy-1x", "greedy-3x", "greedy-8x"]
    saved = [sum(c["saved_ms"] for c in s["choices"]) for s in specs]
    assert saved == sorted(saved) and len(set(saved)) == 3
    assert all(s["plan"]["steps"][-1]["params"] == {"mode": "int8"} for s in specs)

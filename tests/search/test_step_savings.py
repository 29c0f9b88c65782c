"""What each setting saves on the whole model, measured in the file the plans convert to,
and how the greedy ranks steps by it: a setting that made the file slower is never taken,
one that saved half its prediction counts half."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console
from tiny_tasks import conv_task

from devicefit.evaluators.local import LocalEvaluator
from devicefit.results.sensitivity_table import step_savings_table
from devicefit.search.greedy_plan import greedy_choices, greedy_plans, plan_saved_ms
from devicefit.search.sensitivity_savings import add_predictions
from devicefit.search.step_savings import (
    measure_steps,
    step_line,
    step_points,
    with_efficiency,
)
from devicefit.spaces import get_technique
from devicefit.spaces.base import ConvertContext
from devicefit.spaces.sensitivity import sensitivity_profile


def _point(unit: str, technique: str, level: str, drop: float, saved: float) -> dict:
    return {
        "unit": unit,
        "layers": [f"{unit}_conv"],
        "technique": technique,
        "level": level,
        "setting": {"mild": 0.25, "strong": 0.7, "identity": 0.0}[level],
        "drop": drop,
        "error": None,
        "saved_ms": {"local": saved},
    }


# Predicted: low-rank saves 10 ms per point on b1, channel pruning 5 on b2.
POINTS = [
    _point("b1", "lowrank", "identity", 0.0, 0.0),
    _point("b1", "lowrank", "strong", 0.1, 1.0),
    _point("b2", "channel_pruning", "mild", 0.1, 0.5),
]


def _measured(lowrank: float, pruning: float, mode: str = "int8") -> dict[str, Any]:
    steps = [
        {"technique": "lowrank", "level": "strong", "efficiency": lowrank},
        {"technique": "channel_pruning", "level": "mild", "efficiency": pruning},
    ]
    return {"device": "local", "mode": mode, "steps": steps}


def test_only_scored_graph_settings_with_a_prediction_are_steps() -> None:
    extra = [
        {**_point("b3", "magnitude_pruning", "mild", 0.0, 0.0)},
        {**_point("b3", "channel_pruning", "mild", 0.1, 0.5), "error": "ValueError: no"},
        {**_point("b4", "channel_pruning", "mild", 0.1, 0.5), "saved_ms": None},
        _point("b5", "channel_pruning", "mild", 0.1, 0.5),
        _point("b6", "channel_pruning", "mild", 0.1, -0.2),  # predicted to add time
        {**_point("b7", "channel_pruning", "mild", 0.1, 0.5), "drop": None},  # not scored
    ]
    steps = step_points(POINTS + extra, "local")
    assert {k: [p["unit"] for p in v] for k, v in steps.items()} == {
        ("lowrank", "strong"): ["b1"],
        ("channel_pruning", "mild"): ["b2", "b5"],
    }
    assert step_points(POINTS, "elsewhere") == {}


def test_each_prediction_is_multiplied_by_its_setting_s_measured_efficiency() -> None:
    scaled = with_efficiency(POINTS, _measured(-0.2, 0.5), "local", "int8")
    assert [p["saved_ms"]["local"] for p in scaled] == pytest.approx([0.0, -0.2, 0.25])
    assert [p.get("efficiency") for p in scaled] == [None, -0.2, 0.5]
    # Measured in another file or on another device: the predictions stand.
    assert with_efficiency(POINTS, _measured(-0.2, 0.5), "local", "float32") == POINTS
    assert with_efficiency(POINTS, _measured(-0.2, 0.5), "pi", "int8") == POINTS
    assert with_efficiency(POINTS, None, "local", "int8") == POINTS
    # A unit whose setting was predicted to add time is not made a saving by a negative
    # efficiency.
    grew = _point("b3", "lowrank", "strong", 0.1, -0.3)
    (after,) = with_efficiency([grew], _measured(-0.2, 0.5), "local", "int8")
    assert after["saved_ms"]["local"] == -0.3


def test_a_setting_that_made_the_file_slower_is_never_taken() -> None:
    profiles = {"local": {"float32": {"median_ms": 4.0}, "int8": {"median_ms": 2.0}}}
    trusted = greedy_plans({"points": POINTS}, profiles, "local", budget=1.0, epochs=3)
    assert [c["technique"] for c in trusted[0]["choices"]] == ["lowrank", "channel_pruning"]
    profile = {"points": POINTS, "step_savings": _measured(-0.2, 0.5)}
    (plan,) = greedy_plans(profile, profiles, "local", budget=1.0, epochs=3)
    assert [c["technique"] for c in plan["choices"]] == ["channel_pruning"]
    assert plan["choices"][0]["saved_ms"] == pytest.approx(0.25)
    assert plan["choices"][0]["efficiency"] == 0.5


def test_a_lower_efficiency_moves_a_step_down_the_ranking() -> None:
    # 10 ms per point predicted for low-rank, 5 for pruning; measured, 10 x 0.3 < 5 x 1.
    taken = greedy_choices(
        with_efficiency(POINTS, _measured(0.3, 1.0), "local", "int8"), "local", 0.1, 0.01
    )
    assert [c.technique for c in taken] == ["channel_pruning"]
    taken = greedy_choices(POINTS, "local", 0.1, 0.01)
    assert [c.technique for c in taken] == ["lowrank"]


def test_techniques_stacked_on_a_unit_save_at_their_weighted_efficiency() -> None:
    layer_ms = {"b1_conv": 4.0, "b2_conv": 2.0}
    cut = {
        **_point("b1", "channel_pruning", "mild", 0.1, 0.5 * 3.0),
        "macs_kept": {"b1_conv": 0.5, "b2_conv": 0.5},
        "efficiency": 0.5,
    }  # predicted 3.0 ms, measured half of it
    shrink = {
        **_point("b1", "kernel_reduction", "mild", 0.1, 2.8),
        "setting": 1,
        "macs_kept": {"b1_conv": 0.3},
    }  # predicted 2.8 ms, efficiency 1
    taken = greedy_choices([cut, shrink], "local", 1.0, 0.01, layer_ms)
    assert {c.technique for c in taken} == {"channel_pruning", "kernel_reduction"}
    # Together predicted 4.4 ms (shares multiply); efficiency (1.5 + 2.8) / (3.0 + 2.8).
    assert plan_saved_ms(taken, layer_ms) == pytest.approx(4.4 * 4.3 / 5.8)


def test_each_setting_is_measured_on_every_unit_at_once_on_a_real_device() -> None:
    """Channel pruning of the first conv of a real Keras model, every setting converted
    to int8 and timed in paired rounds against the untouched int8 file: the strong cut
    saves time, and its efficiency is what it saved over what was predicted."""
    task = conv_task(size=32, channels=3, filters=64, examples=32, flatten=False)
    context = ConvertContext(task.input_shape, task.calibration)
    technique = get_technique("channel_pruning")
    points = sensitivity_profile(
        task.model, [technique], task.data.x_val, task.data.y_val, task.metric, context
    )
    profile = {"points": [{**p.to_dict(), "layers": list(p.layers)} for p in points]}
    add_predictions(profile, {"local": {"float32": {"layers": {"conv1": 0.5, "conv2": 4.0}}}})
    broken = {**profile["points"][-1], "unit": "gone", "level": "broken", "setting": 7.0}
    entries = measure_steps(
        [*profile["points"], broken], "local", LocalEvaluator(), task, "int8", threads=1
    )
    by_level = {e["level"]: e for e in entries}
    assert set(by_level) == {"mild", "medium", "strong", "broken"}
    assert "error" in by_level["broken"] and "measured_ms" not in by_level["broken"]
    strong = by_level["strong"]
    assert 0 < strong["measured_ms"] < strong["untouched_ms"], strong
    assert strong["efficiency"] == pytest.approx(strong["measured_ms"] / strong["predicted_ms"])
    assert strong["units"] == sum(p["level"] == "strong" for p in profile["points"]) >= 1
    lines = [step_line(e, "local", "int8") for e in entries]
    assert "efficiency" in lines[-2] and "not measured" in lines[-1]
    page = step_savings_table(
        {"step_savings": {"device": "local", "mode": "int8", "steps": entries}}
    )
    assert page.count("<tr>") == 5 and "not measured" in page


class _Rounds:
    """A stand-in device for the logic around the measurement: each file's block is its
    size in KB (so a smaller file "saves"), or it fails; it records the files it got."""

    def __init__(self, fails: bool = False) -> None:
        self.fails, self.files = fails, []

    def measure_rounds(self, files: list[bytes], spec: Any) -> Any:
        from devicefit.errors import DeviceUnavailable
        from devicefit.evaluators.base import Rounds

        if self.fails:
            raise DeviceUnavailable("local: the device went away")
        self.files.append(files)
        return Rounds([[len(f) / 1000] * spec.rounds for f in files], spec.threads)


def _study(tmp_path: Any, **info: Any) -> tuple[Any, Any, dict[str, Any], Any]:
    """A study on ``local`` (int8 faster than float32 there, and losing nothing), with
    the channel-pruning profile of a real model, and that model's task."""
    import json

    import optuna

    from devicefit.config import StudyConfig
    from devicefit.search import attrs
    from devicefit.search.run import build_space
    from devicefit.search.study import set_study_info

    task = conv_task(size=16, channels=3, filters=32, examples=16, flatten=False)
    context = ConvertContext(task.input_shape, task.calibration)
    points = sensitivity_profile(
        task.model,
        [get_technique("channel_pruning")],
        task.data.x_val,
        task.data.y_val,
        task.metric,
        context,
    )
    layers = {"conv1": 0.2, "conv2": 1.0}
    profiles = {
        "local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 1.2, "layers": layers}}
    }
    (tmp_path / attrs.DEVICE_PROFILE_FILE).write_text(json.dumps(profiles))
    profile = {
        "points": [{**p.to_dict(), "layers": list(p.layers)} for p in points],
        "complete": True,
        "conversions": {"int8": {"drop": 0.0}},
    }
    add_predictions(profile, {"local": {"float32": {"median_ms": 2.0, "layers": layers}}})
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr(attrs.STUDY_KEY, {})
    set_study_info(study, objectives=[{"device": "local"}], max_metric_drop=1.0, **info)
    space = build_space(StudyConfig(task="digits", techniques=("channel_pruning", "quantization")))
    return study, space, profile, task


def test_steps_are_measured_in_the_file_the_plans_convert_to_and_correct_them(
    tmp_path: Any,
) -> None:
    from devicefit.search.greedy_plan import greedy_plans
    from devicefit.search.step_savings import add_step_savings

    study, space, profile, task = _study(tmp_path)
    device = _Rounds()
    console = Console(file=io.StringIO())
    add_step_savings(study, tmp_path, profile, task, {"local": device}, space, 1, console)
    measured = profile["step_savings"]
    # int8: the faster untouched file, its loss within the budget, as greedy_plans picks.
    assert measured["mode"] == "int8" and measured["device"] == "local"
    (files,) = device.files
    assert all(b"TFL3" in f[:8] for f in files) and len(files) == 1 + len(measured["steps"])
    assert all(e["efficiency"] is not None for e in measured["steps"]), measured
    # The plans were ranked on the corrected savings: every choice carries its efficiency.
    profiles = {"local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 1.2}}}
    specs = greedy_plans(profile, profiles, "local", 1.0, 3, int8_drop=0.0)
    ratios = {(e["technique"], e["level"]): e["efficiency"] for e in measured["steps"]}
    chosen = [c for spec in specs for c in spec["choices"]]
    assert chosen and all(c["efficiency"] == ratios[(c["technique"], c["level"])] for c in chosen)
    # Once per study: a second call measures nothing more.
    add_step_savings(study, tmp_path, profile, task, {"local": device}, space, 1, console)
    assert len(device.files) == 1
    assert "efficiency" in console.file.getvalue()


def test_a_device_that_fails_leaves_every_prediction_standing(tmp_path: Any) -> None:
    from devicefit.search.step_savings import add_step_savings

    study, space, profile, task = _study(tmp_path)
    console = Console(file=io.StringIO())
    add_step_savings(
        study, tmp_path, profile, task, {"local": _Rounds(fails=True)}, space, 1, console
    )
    steps = profile["step_savings"]["steps"]
    assert steps and all("device went away" in e["error"] for e in steps)
    assert with_efficiency(profile["points"], profile["step_savings"], "local", "int8") == [
        p for p in profile["points"]
    ]


def test_a_study_whose_plans_were_made_before_is_not_measured(tmp_path: Any) -> None:
    from devicefit.search.step_savings import add_step_savings

    study, space, profile, task = _study(tmp_path, profile_plans={})
    device = _Rounds()
    console = Console(file=io.StringIO())
    add_step_savings(study, tmp_path, profile, task, {"local": device}, space, 1, console)
    assert "step_savings" not in profile and device.files == []
    # Nor on a study whose primary device is not among the devices.
    study, space, profile, task = _study(tmp_path)
    add_step_savings(study, tmp_path, profile, task, {"pi": device}, space, 1, console)
    assert "step_savings" not in profile and device.files == []

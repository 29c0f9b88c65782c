"""What the whole-model int8 file loses decides whether profile plans convert to it: a real
model, real conversions and the real interpreter, scored on the profile's subset."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from devicefit.evaluators.metrics import get_metric
from devicefit.search.conversion_drops import add_conversion_drops, conversion_drops, int8_drop


def _task(loud: float) -> Any:
    """Two inputs decide the class (is x1 above x0?); a third, scaled by ``loud`` in the
    hidden layer, is read by nothing. With ``loud`` 1000 the hidden tensor's int8 range is
    ~4 per step: x0 and x1 round to the same value and the class is lost."""
    import keras

    hidden = keras.layers.Dense(3, use_bias=False, name="hidden")
    head = keras.layers.Dense(2, use_bias=False, name="head")
    model = keras.Sequential([keras.Input((3,)), hidden, head])
    hidden.set_weights([np.diag([1.0, 1.0, loud]).astype(np.float32)])
    head.set_weights([np.array([[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]], np.float32)])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (600, 3)).astype(np.float32)
    x = x[np.abs(x[:, 1] - x[:, 0]) > 0.05][:400]  # no class a float32 step away from flipping
    y = (x[:, 1] > x[:, 0]).astype(np.int64)
    return SimpleNamespace(
        model=model,
        input_shape=(1, 3),
        calibration=x[:100],
        data=SimpleNamespace(x_val=x[100:], y_val=y[100:]),
        metric=get_metric("accuracy"),
    )


def test_an_int8_file_that_loses_the_class_is_scored_as_a_large_drop() -> None:
    lossy = conversion_drops(_task(loud=1000.0))
    assert lossy["float32"]["metric"] == 100.0
    assert lossy["int8"]["drop"] > 30.0, lossy
    clean = conversion_drops(_task(loud=1.0))
    assert clean["int8"]["drop"] < 1.0, clean
    assert int8_drop({"conversions": lossy}) == lossy["int8"]["drop"]
    assert int8_drop({"conversions": {"int8": {"error": "no"}}}) == float("inf")
    assert int8_drop({}) is None


def _point(unit: str, technique: str, setting: float, drop: float, saved: float) -> dict:
    layer = {"channel_pruning": "conv", "lowrank": "dense"}[technique]
    return {
        "unit": unit,
        "layers": [f"{unit}_{layer}"],
        "technique": technique,
        "level": "mild",
        "setting": setting,
        "drop": drop,
        "error": None,
        "saved_ms": {"local": saved},
    }


POINTS = [_point("b1", "channel_pruning", 0.25, 0.2, 1.0), _point("b2", "lowrank", 0.75, 0.2, 0.5)]


def _study(folder: Any) -> Any:
    from devicefit.config import StudyConfig
    from devicefit.search.run import build_space
    from devicefit.search.study import create_study

    config = StudyConfig(task="digits", techniques=("channel_pruning", "lowrank", "quantization"))
    space = build_space(config)
    recipes = space.recipe_params({"channel_pruning": {"ratio": 0.3}})
    study = create_study(
        config, folder, get_metric("accuracy"), 1.0, "digits", recipes, space.combined_settings()
    )
    return study, space


@pytest.mark.parametrize(("loud", "mode"), [(1000.0, "float32"), (1.0, "int8")])
def test_profile_plans_convert_to_int8_only_when_its_loss_fits_the_budget(
    tmp_path: Any, loud: float, mode: str
) -> None:
    from devicefit.search import attrs
    from devicefit.search.greedy_plan import add_profile_plans, whole_file_modes
    from devicefit.search.study import study_info

    folder = tmp_path / "s"
    study, space = _study(folder)
    # int8 runs four times faster on the device: speed alone would pick it.
    profiles = {"local": {"float32": {"median_ms": 2.0}, "int8": {"median_ms": 0.5}}}
    (folder / attrs.DEVICE_PROFILE_FILE).write_text(json.dumps(profiles))
    profile = {"points": POINTS, "complete": True}  # each point costs 0.2 of the 1.0 budget
    out = io.StringIO()
    modes = whole_file_modes(space)  # as the search passes them
    assert "int8" in modes
    add_conversion_drops(folder, profile, _task(loud), modes, Console(file=out, width=200))
    saved = json.loads((folder / attrs.SENSITIVITY_FILE).read_text())
    assert saved["conversions"]["int8"]["drop"] == profile["conversions"]["int8"]["drop"]
    assert "whole-model int8 file on the profile subset: drop" in out.getvalue()
    add_profile_plans(study, folder, space, Console(file=out, width=200))
    plans = [s for s in study_info(study)["fixed_trials"] if "profile_plan" in s["attrs"]]
    assert plans
    for spec in plans:
        (step,) = [s for s in spec["plan"]["steps"] if s["technique"] == "quantization"]
        assert step["params"]["mode"] == mode
    assert f"; {mode} file" in out.getvalue()


def test_a_profile_keeps_its_drops_and_a_study_without_int8_scores_nothing(tmp_path: Any) -> None:
    profile: dict[str, Any] = {"points": [], "complete": True, "conversions": {"int8": {"drop": 9}}}
    console = Console(file=io.StringIO())
    add_conversion_drops(tmp_path, profile, None, ("float32", "int8"), console)  # kept: no task
    assert profile["conversions"] == {"int8": {"drop": 9}}
    fresh: dict[str, Any] = {"points": [], "complete": True}
    add_conversion_drops(tmp_path, fresh, None, ("float32", "float16"), console)
    assert "conversions" not in fresh and not list(tmp_path.iterdir())

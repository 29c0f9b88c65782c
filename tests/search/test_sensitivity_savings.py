"""The time a sensitivity setting saves: MACs kept per layer, the prediction from the
device profile, which settings are checked, and the check measured on a real device."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console
from tiny_tasks import conv_task

from devicefit.evaluators.local import LocalEvaluator
from devicefit.search.sensitivity_savings import (
    add_predictions,
    check_predictions,
    checked_points,
    predicted_saved_ms,
)
from devicefit.spaces import get_technique
from devicefit.spaces.base import ConvertContext
from devicefit.spaces.sensitivity import macs_kept, sensitivity_profile


def test_a_factorized_layers_new_part_counts_toward_it() -> None:
    before = {"conv1": 100, "conv2": 400, "fc": 50}
    after = {"conv1": 100, "conv2_lowrank": 60, "conv2": 40, "fc": 50, "stray": 7}
    assert macs_kept(before, after) == {"conv2": pytest.approx(0.25)}


def test_a_pruned_layer_and_the_one_reading_it_both_keep_less() -> None:
    before = {"conv1": 100, "conv2": 400}
    assert macs_kept(before, {"conv1": 30, "conv2": 120}) == {"conv1": 0.3, "conv2": 0.3}
    assert macs_kept(before, {"conv2": 400}) == {"conv1": 0.0}  # gone entirely


def test_prediction_is_layer_time_times_share_removed() -> None:
    layers = {"conv1": 2.0, "conv2": 1.0, "fc": 0.5}
    assert predicted_saved_ms({"conv1": 0.25, "conv2": 1.5}, layers) == pytest.approx(1.0)
    assert predicted_saved_ms({}, layers) == 0.0


def _profile() -> dict:
    points = [
        {"unit": "b1", "technique": "channel_pruning", "level": "strong", "macs_kept": {"c": 0.3}},
        {"unit": "b2", "technique": "channel_pruning", "level": "strong", "macs_kept": {"d": 0.3}},
        {"unit": "b1", "technique": "lowrank", "level": "strong", "macs_kept": {"c": 0.9}},
        {"unit": "b1", "technique": "magnitude_pruning", "level": "strong", "macs_kept": {}},
        {"unit": "b1", "technique": "quantization", "level": "strong", "macs_kept": None},
        {"unit": "b3", "technique": "lowrank", "level": "mild", "macs_kept": {"e": 0.5},
         "error": "ValueError: no"},
    ]  # fmt: skip
    return {"points": points}


def test_every_device_with_a_layer_profile_gets_a_prediction() -> None:
    profile = _profile()
    devices = {
        "local": {"float32": {"layers": {"c": 1.0, "d": 0.5, "e": 3.0}}},
        "pi": {"float32": {"unavailable": "no profiler"}},
    }
    add_predictions(profile, devices)
    saved = [p["saved_ms"] for p in profile["points"]]
    assert saved[0] == {"local": pytest.approx(0.7)}
    assert saved[2] == {"local": pytest.approx(0.1)}
    assert saved[3] == {"local": 0.0}  # weights: nothing saved on dense kernels
    assert saved[4] is None and saved[5] is None  # convert: not predicted; failed: nothing


def test_checked_points_take_each_technique_in_turn() -> None:
    profile = _profile()
    add_predictions(profile, {"local": {"float32": {"layers": {"c": 1.0, "d": 0.5}}}})
    chosen = [(p["unit"], p["technique"]) for p in checked_points(profile, "local", 3)]
    assert chosen == [("b1", "channel_pruning"), ("b1", "lowrank"), ("b2", "channel_pruning")]
    assert checked_points(profile, "elsewhere") == []


def _task() -> SimpleNamespace:
    """A real Keras model whose convs hold nearly all the compute, on random data."""
    return conv_task(size=32, channels=3, filters=64, examples=32, flatten=False)


def test_the_check_measures_a_pruned_layers_saving_on_a_real_device() -> None:
    """Pruning 70% of conv1's filters removes 70% of both convs' MACs: predicted from a
    made-up profile here; measured for real in paired rounds on the local device."""
    task = _task()
    technique = get_technique("channel_pruning")
    context = ConvertContext(task.input_shape, task.calibration)
    points = sensitivity_profile(
        task.model, [technique], task.data.x_val, task.data.y_val, task.metric, context
    )
    profile = {"points": [{**p.to_dict(), "layers": list(p.layers)} for p in points]}
    strong = next(p for p in profile["points"] if p["level"] == "strong")
    kept = strong["macs_kept"]  # 70% of 64 filters, rounded: both convs keep the same share
    assert set(kept) == {"conv1", "conv2"} and kept["conv1"] == kept["conv2"]
    assert kept["conv1"] == pytest.approx(0.3, abs=0.02)
    add_predictions(profile, {"local": {"float32": {"layers": {"conv1": 0.5, "conv2": 4.0}}}})
    console = Console(file=io.StringIO())
    checks = check_predictions(profile, task, {"local": LocalEvaluator()}, 1, console)
    assert [(c["unit"], c["level"]) for c in checks][0] == (strong["unit"], "strong")
    first = checks[0]
    assert "error" not in first, first
    assert first["predicted_ms"] == pytest.approx((1 - kept["conv1"]) * (0.5 + 4.0))
    assert 0 < first["measured_ms"] < first["untouched_ms"]

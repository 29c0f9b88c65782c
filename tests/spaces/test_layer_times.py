"""Where a file's time goes: real LiteRT profiles of real files, traced back to the Keras
layers (and blocks) they came from."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from spaces_zoo import ZooModel, build_zoo_model

from devicefit.evaluators.base import BenchmarkSpec
from devicefit.evaluators.local import LocalEvaluator
from devicefit.evaluators.op_attribution import attribute, file_ops
from devicefit.spaces.blocks import find_blocks
from devicefit.spaces.convert import to_tflite
from devicefit.spaces.graph import dependency_graph
from devicefit.spaces.layer_times import LayerTimes, layer_times

L = keras.layers
# Ops the converter adds around a model (no layer made them): the only ones left unmapped.
CONVERTER_OPS = ("QUANTIZE", "DEQUANTIZE")


def residual_concat() -> keras.Model:
    """A residual net with a Concatenate: two branches joined on channels, an Add around
    them, with enough compute that the runtime's own overhead is small beside it."""
    inputs = keras.Input((64, 64, 3), name="image")
    stem = L.Conv2D(32, 3, padding="same", activation="relu", name="stem")(inputs)
    left = L.Conv2D(16, 3, padding="same", activation="relu", name="left")(stem)
    right = L.Conv2D(16, 1, padding="same", activation="relu", name="right")(stem)
    joined = L.Concatenate(name="join")([left, right])
    mixed = L.Conv2D(32, 3, padding="same", name="mix")(joined)
    x = L.Add(name="residual")([stem, mixed])
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flat")(x)
    outputs = L.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="residual_concat")


def _model(name: str) -> ZooModel:
    if name == "residual_concat":
        keras.utils.set_random_seed(1)
        return ZooModel(name, residual_concat(), (1, 64, 64, 3))
    return build_zoo_model(name)


def _file(zoo: ZooModel, mode: str) -> bytes:
    if mode == "float32":
        return to_tflite(zoo.model, zoo.input_shape)
    calibration = zoo.inputs(16)

    def configure(converter) -> None:  # noqa: ANN001 - tf.lite.TFLiteConverter
        import tensorflow as tf

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in calibration)

    return to_tflite(zoo.model, zoo.input_shape, configure)


def _profile(zoo: ZooModel, mode: str) -> tuple[LayerTimes, float]:
    """Measured as a search measures on ``local``: in a fresh child process, profiled
    after the timed runs."""
    tflite = _file(zoo, mode)
    measurement = LocalEvaluator().measure(tflite, BenchmarkSpec(op_profile_runs=200))
    profile = measurement.op_profile
    assert profile is not None, measurement.unavailable
    times = attribute(profile["ops"], file_ops(tflite))
    total = sum(op["ms"] for op in profile["ops"])
    return layer_times(zoo.model, tflite, times, profile["run_ms"]), total


@pytest.mark.parametrize("mode", ["float32", "int8"])
@pytest.mark.parametrize("name", ["digits_task", "sr_task", "residual_concat", "unet", "resnet50"])
def test_every_ops_time_lands_on_one_layer_or_an_unmapped_line(name: str, mode: str) -> None:
    zoo = _model(name)
    times, profiled = _profile(zoo, mode)
    # Nothing lost, nothing counted twice: layers and unmapped lines hold every op's time.
    assert sum(times.layers.values()) + sum(times.unmapped.values()) == pytest.approx(profiled)
    assert set(times.layers) <= {layer.name for layer in zoo.model.layers}
    # Every op a layer made is traced to it; only the converter's own ops stay unmapped,
    # each under its op name.
    assert all(label.split()[0] in CONVERTER_OPS for label in times.unmapped), times.unmapped
    if mode == "float32":
        assert times.unmapped == {}
    weighted = {
        layer.name
        for layer in zoo.model.layers
        if layer.weights and not isinstance(layer, L.BatchNormalization)
    }
    assert weighted <= set(times.layers)
    # Blocks and channel groups hold exactly their layers' time.
    graph = dependency_graph(zoo.model)
    blocks = find_blocks(graph.view)
    for block, ms in times.blocks.items():
        assert ms == pytest.approx(sum(times.layers.get(layer, 0.0) for layer in blocks[block]))
    for group, ms in times.groups.items():
        owned = [
            n for n in times.layers if (g := graph.group_of(n)) is not None and g.name == group
        ]
        assert owned and ms == pytest.approx(sum(times.layers[n] for n in owned))


@pytest.mark.parametrize("name", ["digits_task", "sr_task", "residual_concat"])
def test_per_layer_times_sum_to_the_run_within_ten_percent(name: str) -> None:
    times, _ = _profile(_model(name), "float32")
    assert times.total_ms == pytest.approx(times.run_ms, rel=0.10)


def test_the_dense_head_costs_far_more_than_its_macs_say() -> None:
    """The issue's point, measured: on the digits model the wide Dense head holds a few
    percent of the MACs and several times that share of the time."""
    from devicefit.spaces.macs import macs_by_layer

    zoo = _model("digits_task")
    times, _ = _profile(zoo, "float32")
    macs = macs_by_layer(zoo.model, zoo.input_shape)
    head = max((n for n in macs if n.startswith("fc")), key=macs.get)
    mac_share = macs[head] / sum(macs.values())
    time_share = times.layers[head] / times.total_ms
    assert mac_share < 0.05 and time_share > 3 * mac_share, (mac_share, time_share)
    assert np.isfinite(time_share)

"""Mixed precision: per-layer bit-widths, read back from the quantized file."""

from __future__ import annotations

import numpy as np
import pytest

from devicefit.evaluators.tflite_ops import weighted_ops
from devicefit.evaluators.tflite_predict import predict
from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import ConvertContext
from devicefit.spaces.convert import to_tflite
from devicefit.spaces.mixed_precision import locate_layers
from devicefit.spaces.quantization import Quantization

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3), name="image")
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv3")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(32, activation="relu", name="fc")(x)
    outputs = L.Dense(4, name="head")(x)
    return keras.Model(inputs, outputs)


def _ctx() -> ConvertContext:
    rng = np.random.default_rng(0)
    return ConvertContext((1, 12, 12, 3), rng.normal(size=(32, 12, 12, 3)).astype(np.float32))


def test_layers_are_found_in_the_float_file_by_kernel_shape() -> None:
    model = _model()
    found = locate_layers(model, to_tflite(model, (1, 12, 12, 3)))
    assert sorted(found) == ["conv1", "conv2", "conv3", "fc", "head"]
    assert found["fc"][0].weight_shape == (32, 16)
    assert found["conv3"][0].kind == "CONV_2D"


def test_each_layer_is_stored_at_its_own_bit_width() -> None:
    model = _model()
    plan = {
        "conv1": "a8w8",
        "conv2": "a16w8",
        "conv3": "w4",
        "fc": "w8",
        "head": "float",
    }
    params = {"per_layer": {name: {"precision": p} for name, p in plan.items()}}
    tflite = Quantization().convert(model, params, _ctx())
    ops = {op.index: op for op in weighted_ops(tflite)}
    found = locate_layers(model, tflite)  # the same shapes, now read from the quantized file
    stored = {name: (ops[found[name][0].index].weight_type, found[name][0]) for name in plan}
    assert stored["conv1"][0] == "INT8" and stored["conv1"][1].output_type == "INT8"
    assert stored["conv2"][0] == "INT8" and stored["conv2"][1].output_type == "INT16"
    assert stored["conv3"][0] == "INT4" and stored["conv3"][1].output_type == "FLOAT32"
    assert stored["fc"][0] == "INT8" and stored["fc"][1].output_type == "FLOAT32"
    assert stored["head"][0] == "FLOAT32"
    x = _ctx().calibration[:8]
    out, ref = predict(tflite, x), np.asarray(model(x))
    assert out.shape == ref.shape
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.95


def test_a8w4_layers_have_int4_weights_and_int8_activations() -> None:
    model = _model()
    plan = {"conv2": "a8w4", "fc": "a8w4", "head": "a8w8"}
    params = {"per_layer": {name: {"precision": p} for name, p in plan.items()}}
    tflite = Quantization().convert(model, params, _ctx())
    ops = {op.index: op for op in weighted_ops(tflite)}
    found = locate_layers(model, tflite)
    for name, weights in (("conv2", "INT4"), ("fc", "INT4"), ("head", "INT8")):
        (op,) = found[name]
        assert (ops[op.index].weight_type, op.output_type) == (weights, "INT8"), name
    assert ops[found["conv1"][0].index].weight_type == "FLOAT32"  # not in the plan
    x = _ctx().calibration[:8]
    out, ref = predict(tflite, x), np.asarray(model(x))
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9


def test_all_float_precisions_leave_the_file_float() -> None:
    model = _model()
    params = {"per_layer": {"conv1": {"precision": "float"}}}
    tflite = Quantization().convert(model, params, _ctx())
    assert {op.weight_type for op in weighted_ops(tflite)} == {"FLOAT32"}


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown precision"):
        Quantization().convert(_model(), {"per_layer": {"fc": {"precision": "w3"}}}, _ctx())


def test_a8w4_is_searched_when_a_study_asks_for_it_and_not_by_default() -> None:
    from devicefit.errors import UsageError
    from devicefit.spaces.space import SearchSpace

    searched = SearchSpace([Quantization()]).layer_ranges["quantization"]["precision"]
    assert "a8w4" not in searched.options  # older per-layer studies keep their space
    asked = SearchSpace([Quantization()], {"quantization": {"precision": ["float", "a8w4"]}})
    assert asked.layer_ranges["quantization"]["precision"].options == ("float", "a8w4")
    with pytest.raises(UsageError, match="a8w4"):  # the error lists it among the allowed
        SearchSpace([Quantization()], {"quantization": {"precision": ["a4w4"]}})

"""Magnitude pruning: the cubic schedule, exact masks, and the fine-tuning callback."""

from __future__ import annotations

import numpy as np
import pytest
from spaces_zoo import build_zoo_model

from devicefit.evaluators.tflite_predict import predict
from devicefit.quiet import silence_tensorflow
from devicefit.spaces.rebuild import copy_model
from devicefit.spaces.sparsity import (
    MagnitudePruning,
    magnitude_mask,
    polynomial_sparsity,
    prunable_kernels,
)

silence_tensorflow()

import keras  # noqa: E402


def test_schedule_is_cubic_from_initial_to_target() -> None:
    assert polynomial_sparsity(0, 100, 0.8) == 0.0
    assert polynomial_sparsity(50, 100, 0.8) == pytest.approx(0.8 * (1 - 0.5**3))
    assert polynomial_sparsity(100, 100, 0.8) == pytest.approx(0.8)
    assert polynomial_sparsity(250, 100, 0.8) == pytest.approx(0.8)  # held after the end
    values = [polynomial_sparsity(t, 100, 0.8) for t in range(101)]
    assert values == sorted(values)


def test_mask_zeroes_exactly_the_smallest_magnitudes() -> None:
    values = np.array([[0.5, -0.1, 2.0], [-3.0, 0.05, 1.0]], np.float32)
    mask = magnitude_mask(values, 0.5)
    np.testing.assert_array_equal(mask, [[0, 0, 1], [1, 0, 1]])
    assert magnitude_mask(values, 0.0).all()


def test_finalize_gives_each_kernel_the_requested_sparsity_and_keeps_biases() -> None:
    model = copy_model(build_zoo_model("sequential_cnn").model)
    biases = [layer.get_weights()[1] for layer in model.layers if hasattr(layer, "bias")]
    MagnitudePruning().finalize(model, {"sparsity": 0.6})
    for label, variable in prunable_kernels(model):
        values = variable.numpy()
        assert np.mean(values == 0) == pytest.approx(round(0.6 * values.size) / values.size), label
    after = [layer.get_weights()[1] for layer in model.layers if hasattr(layer, "bias")]
    assert all(np.array_equal(a, b) for a, b in zip(biases, after, strict=True))


def test_callback_follows_the_schedule_during_fine_tuning() -> None:
    zoo = build_zoo_model("mlp")
    model = copy_model(zoo.model)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="mse")
    technique = MagnitudePruning()
    steps = 8
    (callback,) = technique.training_callbacks(model, {"sparsity": 0.7}, total_steps=steps)
    assert callback.end_step == 6  # the last quarter trains at the final masks
    x = zoo.inputs(count=steps * 4, seed=1)
    y = np.random.default_rng(2).normal(size=(len(x), 3)).astype(np.float32)
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[callback], verbose=0, shuffle=False)
    assert callback.sparsity == pytest.approx(0.7)
    for _, variable in prunable_kernels(model):
        assert np.mean(variable.numpy() == 0) >= 0.69  # masks re-applied after every batch
    technique.finalize(model, {"sparsity": 0.7})
    for _, variable in prunable_kernels(model):
        values = variable.numpy()
        assert np.mean(values == 0) == pytest.approx(round(0.7 * values.size) / values.size)


def test_no_callbacks_without_steps_or_sparsity() -> None:
    model = build_zoo_model("mlp").model
    assert MagnitudePruning().training_callbacks(model, {"sparsity": 0.0}, 100) == []
    assert MagnitudePruning().training_callbacks(model, {"sparsity": 0.5}, 0) == []


def _pointwise_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="spatial")(inputs)
    x = keras.layers.Conv2D(32, 1, activation="relu", name="expand")(x)
    outputs = keras.layers.Conv2D(8, 1, name="project")(x)
    return keras.Model(inputs, outputs)


def test_xnnpack_pattern_prunes_only_1x1_convs_and_stores_them_sparse() -> None:
    from devicefit.evaluators.tflite_stats import _schema
    from devicefit.spaces.base import ConvertContext
    from devicefit.spaces.quantization import Quantization

    model = _pointwise_model()
    technique = MagnitudePruning()
    params = {"sparsity": 0.3, "pattern": "xnnpack_1x1"}
    technique.finalize(model, params)
    zeros = {layer.name: float(np.mean(layer.kernel.numpy() == 0)) for layer in model.layers[1:]}
    assert zeros["spatial"] == 0.0
    assert zeros["expand"] >= 2 / 3 - 0.01 and zeros["project"] >= 2 / 3 - 0.01
    assert technique.wants_sparse_file(params)
    rng = np.random.default_rng(0)
    ctx = ConvertContext((1, 8, 8, 4), rng.normal(size=(8, 8, 8, 4)).astype(np.float32), True)
    tflite = Quantization().convert(model, {"mode": "float32"}, ctx)
    schema = _schema()
    graph = schema.Model.GetRootAs(tflite, 0).Subgraphs(0)
    sparse = [graph.Tensors(i).Sparsity() is not None for i in range(graph.TensorsLength())]
    assert sum(sparse) >= 2  # the two pruned 1x1 kernels
    x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
    np.testing.assert_allclose(predict(tflite, x), np.asarray(model(x)), atol=1e-4)


def _wide_pointwise_model() -> keras.Model:
    # Kernels of at least 1024 weights, so dynamic-range int8 really quantizes them.
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="spatial")(inputs)
    x = keras.layers.Conv2D(128, 1, activation="relu", name="expand")(x)
    outputs = keras.layers.Conv2D(64, 1, name="project")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "params",
    [{"mode": "dynamic_int8"}, {"mode": "int8"}, {"per_layer": {"expand": {"precision": "w8"}}}],
    ids=["dynamic_int8", "int8", "mixed"],
)
def test_xnnpack_pattern_with_an_integer_file_converts_and_runs(params: dict) -> None:
    # A sparse tensor in a dynamic-range int8 file made the XNNPACK delegate fail to
    # prepare; integer files are stored dense and still hold the pruned zeros.
    from devicefit.spaces.base import ConvertContext
    from devicefit.spaces.quantization import Quantization

    model = _wide_pointwise_model()
    technique = MagnitudePruning()
    technique.finalize(model, {"sparsity": 0.3, "pattern": "xnnpack_1x1"})
    rng = np.random.default_rng(0)
    ctx = ConvertContext((1, 8, 8, 4), rng.normal(size=(16, 8, 8, 4)).astype(np.float32), True)
    tflite = Quantization().convert(model, params, ctx)
    x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
    expected = np.asarray(model(x))
    got = predict(tflite, x)
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()

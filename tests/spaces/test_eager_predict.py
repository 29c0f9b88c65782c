"""The eager batch-by-batch inference every validation score and activation ranking uses."""

from __future__ import annotations

import numpy as np
import pytest

from devicefit.quiet import silence_tensorflow
from devicefit.spaces import eager_predict as module
from devicefit.spaces.eager_predict import batch_size, eager_predict

silence_tensorflow()

import keras  # noqa: E402


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    hidden = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(inputs)
    norm = keras.layers.BatchNormalization(name="bn")(hidden)
    out = keras.layers.Dense(4, name="dense")(keras.layers.Flatten()(norm))
    model = keras.Model(inputs, out)
    # Statistics far from the defaults: training-mode calls would give other outputs.
    model.get_layer("bn").set_weights([np.ones(3), np.zeros(3), np.full(3, 5.0), np.full(3, 9.0)])
    return model


def test_outputs_are_those_of_predict_across_uneven_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _model()
    x = np.random.default_rng(0).normal(size=(23, 6, 6, 2)).astype(np.float32)
    monkeypatch.setattr(module, "MAX_BATCH", 5)  # 5 calls, the last of 3 inputs
    got = eager_predict(model, x)
    assert got.shape == (23, 4)
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_a_model_with_several_outputs_gives_one_array_per_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _model()
    probe = keras.Model(model.inputs, [model.get_layer("conv").output, model.output])
    x = np.random.default_rng(1).normal(size=(7, 6, 6, 2)).astype(np.float32)
    monkeypatch.setattr(module, "MAX_BATCH", 3)
    conv, out = eager_predict(probe, x)
    assert conv.shape == (7, 4, 4, 3) and out.shape == (7, 4)
    expected = probe.predict(x, verbose=0)
    np.testing.assert_allclose(conv, expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, expected[1], rtol=1e-5, atol=1e-5)


def test_a_model_with_named_outputs_gives_a_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    named = keras.Model(model.inputs, {"conv": model.get_layer("conv").output, "out": model.output})
    x = np.random.default_rng(2).normal(size=(5, 6, 6, 2)).astype(np.float32)
    monkeypatch.setattr(module, "MAX_BATCH", 2)
    got = eager_predict(named, x)
    expected = named.predict(x, verbose=0)
    assert set(got) == {"conv", "out"}
    for key in got:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-5)


def test_large_inputs_go_in_fewer_per_call() -> None:
    assert batch_size((32, 32, 1)) == module.MAX_BATCH
    # 224 x 224 x 3 values per input: no more than BATCH_ELEMENTS of them per call.
    assert 1 <= batch_size((224, 224, 3)) < module.MAX_BATCH
    assert batch_size((224, 224, 3)) * 224 * 224 * 3 <= module.BATCH_ELEMENTS
    assert batch_size((4096, 4096, 3)) == 1

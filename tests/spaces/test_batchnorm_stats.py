"""BatchNorm statistics re-estimated after a rewrite: exactly the statistics of the
inputs the layer sees, nothing else touched, frozen and untouched models left alone."""

from __future__ import annotations

import numpy as np
import pytest

from devicefit.quiet import silence_tensorflow

silence_tensorflow()

import keras  # noqa: E402

from devicefit.spaces import get_technique  # noqa: E402
from devicefit.spaces.base import PER_LAYER  # noqa: E402
from devicefit.spaces.batchnorm_stats import BATCH, recalibrate_batchnorm, rewritten  # noqa: E402

L = keras.layers


def _model(frozen: bool = False) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="conv")(inp)
    x = L.BatchNormalization(name="bn", momentum=0.9)(x)
    x = L.ReLU()(x)
    inner_in = keras.Input((8, 8, 6))
    inner_bn = L.BatchNormalization(name="inner_bn", trainable=not frozen)
    inner = keras.Model(inner_in, inner_bn(inner_in), name="inner")
    x = inner(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(3, name="head")(x))


def _inputs(count: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.normal(size=(count, 8, 8, 3)) * 2.0 + 0.5).astype(np.float32)


def test_statistics_become_those_of_the_inputs_and_nothing_else_moves() -> None:
    model = _model()
    x = _inputs(2 * BATCH)
    before = {w.path: np.array(w) for w in model.weights}
    assert recalibrate_batchnorm(model, x) == 2  # the nested model's layer counted too
    conv = keras.Model(model.inputs, model.get_layer("conv").output)
    seen = np.asarray(conv(x)).reshape(2, BATCH, -1, 6)
    bn = model.get_layer("bn")
    # Each batch weighs in once: the mean of the batch means, the mean of the batch
    # variances (the untouched model's statistics gone entirely).
    expected_mean = seen.mean(axis=(1, 2)).mean(axis=0)
    expected_var = seen.var(axis=(1, 2)).mean(axis=0)
    np.testing.assert_allclose(np.array(bn.moving_mean), expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(bn.moving_variance), expected_var, rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.9  # restored
    moved = {p for p, v in before.items() if not np.array_equal(v, np.array(_weight(model, p)))}
    assert moved and all("moving_" in p for p in moved), moved
    assert any(p.startswith("inner") or "inner_bn" in p for p in moved), moved


def test_a_frozen_batchnorm_keeps_its_statistics() -> None:
    model = _model(frozen=True)
    inner = model.get_layer("inner").get_layer("inner_bn")
    mean = np.array(inner.moving_mean)
    assert recalibrate_batchnorm(model, _inputs(BATCH)) == 1
    np.testing.assert_array_equal(np.array(inner.moving_mean), mean)


def test_no_inputs_or_no_batchnorm_changes_nothing() -> None:
    model = _model()
    mean = np.array(model.get_layer("bn").moving_mean)
    assert recalibrate_batchnorm(model, _inputs(0)) == 0
    np.testing.assert_array_equal(np.array(model.get_layer("bn").moving_mean), mean)
    plain = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    assert recalibrate_batchnorm(plain, np.ones((8, 4), np.float32)) == 0


@pytest.mark.parametrize(("ratio", "changed"), [(0.0, False), (0.5, True)])
def test_rewritten_tells_a_rewrite_from_the_identity(ratio: float, changed: bool) -> None:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = L.BatchNormalization(name="bn")(L.Conv2D(6, 3, padding="same", name="conv")(inp))
    x = L.Conv2D(4, 3, padding="same", name="conv2")(L.ReLU()(x))
    model = keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(x)))
    tech = get_technique("channel_pruning")
    tech.prepare(_inputs(16))
    params = {**tech.identity_params(), PER_LAYER: {"conv": {"ratio": ratio}}}
    assert rewritten(model, tech.rewrite(model, params).model) is changed


def _weight(model: keras.Model, path: str) -> object:
    return next(w for w in model.weights if w.path == path)

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
    assert bn.momentum == 0.9  # restored, the nested model's too
    assert model.get_layer("inner").get_layer("inner_bn").momentum == 0.99
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


def _chain() -> keras.Model:
    """conv0 -> bn0 -> conv1 -> bn1 -> conv2 -> bn2 -> head, statistics as trained."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = inp
    for n in range(3):
        x = L.Conv2D(6, 3, padding="same", name=f"conv{n}")(x)
        x = L.ReLU()(L.BatchNormalization(name=f"bn{n}")(x))
    return keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(x)))


def test_only_the_layers_after_a_rewrite_keep_re_estimated_statistics() -> None:
    from spaces_zoo import randomize_batchnorm

    untouched = _chain()
    randomize_batchnorm(untouched)  # trained statistics unlike any re-estimate
    tech = get_technique("channel_pruning")
    tech.prepare(_inputs(16))
    params = {**tech.identity_params(), PER_LAYER: {"conv1": {"ratio": 0.5}}}
    cut = tech.rewrite(untouched, params).model
    x = _inputs(BATCH)
    # bn1 (fewer channels) and bn2 (other inputs) take new statistics; bn0 sits before the
    # cut and keeps the trained ones, exactly.
    assert recalibrate_batchnorm(cut, x, untouched) == 2
    trained = {n: np.array(untouched.get_layer(n).moving_mean) for n in ("bn0", "bn2")}
    np.testing.assert_array_equal(np.array(cut.get_layer("bn0").moving_mean), trained["bn0"])
    assert not np.allclose(np.array(cut.get_layer("bn2").moving_mean), trained["bn2"])
    # Without the untouched model every layer takes the statistics of ``x``.
    again = tech.rewrite(untouched, params).model
    assert recalibrate_batchnorm(again, x) == 3
    assert not np.allclose(np.array(again.get_layer("bn0").moving_mean), trained["bn0"])
    # A cut of the last convolution leaves the layers before it as trained.
    head = {**tech.identity_params(), PER_LAYER: {"conv2": {"ratio": 0.5}}}
    late = tech.rewrite(untouched, head).model
    assert recalibrate_batchnorm(late, x, untouched) == 1  # bn2 lost channels
    np.testing.assert_array_equal(
        np.array(late.get_layer("bn1").moving_mean),
        np.array(untouched.get_layer("bn1").moving_mean),
    )

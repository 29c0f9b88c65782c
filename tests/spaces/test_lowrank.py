"""Low-rank factorization: exact at full rank, per-axis strides and padding, skips."""

from __future__ import annotations

import numpy as np
import pytest

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.lowrank import LowRank, conv_factors, split_svd
from devicefit.spaces.lowrank_conv import channel_factors, choose_rank, tucker2_factors

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers
RNG = np.random.default_rng(0)


def test_split_svd_is_exact_at_full_rank() -> None:
    matrix = RNG.normal(size=(7, 5)).astype(np.float32)
    a, b = split_svd(matrix, 5)
    np.testing.assert_allclose(a @ b, matrix, atol=1e-5)


def test_split_svd_gives_the_best_rank_r_approximation() -> None:
    matrix = RNG.normal(size=(6, 6)).astype(np.float32)
    a, b = split_svd(matrix, 2)
    singular = np.linalg.svd(matrix, compute_uv=False)
    error = np.linalg.norm(matrix - a @ b)  # Eckart-Young: the tail singular values
    assert error == pytest.approx(np.sqrt(np.sum(singular[2:] ** 2)), rel=1e-4)


def test_conv_factors_compose_to_the_kernel_at_full_rank() -> None:
    kernel = RNG.normal(size=(3, 5, 2, 4)).astype(np.float32)
    first, second = conv_factors(kernel, min(3 * 2, 5 * 4))
    assert first.shape == (3, 1, 2, 6) and second.shape == (1, 5, 6, 4)
    composed = np.einsum("ick,jko->ijco", first[:, 0], second[0])
    np.testing.assert_allclose(composed, kernel, atol=1e-5)


@pytest.mark.parametrize(
    ("padding", "strides", "dilation", "size"),
    [
        ("same", (1, 1), (1, 1), (8, 8)),
        ("same", (2, 2), (1, 1), (7, 9)),
        ("valid", (2, 1), (1, 1), (9, 8)),
        ("valid", (1, 1), (2, 2), (9, 9)),
        ("same", (1, 1), (1, 2), (6, 7)),
    ],
)
def test_factorized_convs_compute_the_original_at_full_rank(
    padding: str, strides: tuple[int, int], dilation: tuple[int, int], size: tuple[int, int]
) -> None:
    kh, kw, cin, cout = 3, 3, 2, 3
    kernel = RNG.normal(size=(kh, kw, cin, cout)).astype(np.float32)
    conv = L.Conv2D(cout, (kh, kw), strides, padding, dilation_rate=dilation, use_bias=False)
    first, second = conv_factors(kernel, min(kh * cin, kw * cout))
    rank = first.shape[-1]
    a = L.Conv2D(rank, (kh, 1), (strides[0], 1), padding, dilation_rate=(dilation[0], 1))
    b = L.Conv2D(cout, (1, kw), (1, strides[1]), padding, dilation_rate=(1, dilation[1]))
    x = RNG.normal(size=(2, *size, cin)).astype(np.float32)
    conv.build(x.shape)
    conv.set_weights([kernel])
    expected = np.asarray(conv(x))
    b(a(x))  # Keras 3 layers own variables only once called
    a.set_weights([first, np.zeros(rank, np.float32)])
    b.set_weights([second, np.zeros(cout, np.float32)])
    np.testing.assert_allclose(np.asarray(b(a(x))), expected, atol=1e-4)


def test_rank_is_a_ratio_of_the_full_rank_and_at_least_one() -> None:
    values = np.arange(9, 0, -1, dtype=np.float64)
    assert choose_rank(values, 1.0, "ratio") == 9
    assert choose_rank(values, 0.5, "ratio") == 4  # round half to even; any nearby rank would do
    assert choose_rank(values, 0.01, "ratio") == 1


def test_energy_rule_keeps_the_fewest_values_holding_the_energy() -> None:
    values = np.array([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert choose_rank(values, 0.6, "energy") == 1
    assert choose_rank(values, 0.9, "energy") == 2  # 13/14 = 0.93
    assert choose_rank(values, 0.95, "energy") == 3
    assert choose_rank(values, 1.0, "energy") == 4


def test_channel_and_tucker2_factors_are_exact_at_full_rank() -> None:
    kernel = RNG.normal(size=(3, 3, 5, 7)).astype(np.float32)
    a, b = channel_factors(kernel, 7)
    np.testing.assert_allclose(np.einsum("hwcr,ro->hwco", a, b[0, 0]), kernel, atol=1e-4)
    first, core, last = tucker2_factors(kernel, 5, 7)
    rebuilt = np.einsum("ca,hwab,bo->hwco", first[0, 0], core, last[0, 0])
    np.testing.assert_allclose(rebuilt, kernel, atol=1e-4)


@pytest.mark.parametrize("method", ["channel", "tucker2"])
def test_factorized_conv_equals_the_conv_of_its_reconstructed_kernel(method: str) -> None:
    """Strides, padding and bias go to the right factor: the rewritten model computes
    exactly a conv with the product of its factors."""
    inputs = keras.Input((9, 9, 8))
    outputs = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, outputs)
    applied = LowRank().rewrite(model, {"rank_ratio": 0.25, "method": method})
    layers = {layer.name: layer for layer in applied.model.layers}
    last_kernel, bias = layers["conv"].get_weights()
    if method == "channel":
        first = layers["conv_lowrank"].get_weights()[0]
        kernel = np.einsum("hwcr,ro->hwco", first, last_kernel[0, 0])
    else:
        first = layers["conv_tucker_in"].get_weights()[0]
        core = layers["conv_tucker_core"].get_weights()[0]
        kernel = np.einsum("ca,hwab,bo->hwco", first[0, 0], core, last_kernel[0, 0])
        assert first.shape == (1, 1, 8, 2) and core.shape == (3, 3, 2, 4)
    reference = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")
    x = RNG.normal(size=(2, 9, 9, 8)).astype(np.float32)
    reference(x)
    reference.set_weights([kernel, bias])
    np.testing.assert_allclose(np.asarray(applied.model(x)), np.asarray(reference(x)), atol=1e-4)


def test_rewrite_splits_a_dense_layer_into_the_truncated_svd() -> None:
    inputs = keras.Input((32,))
    outputs = L.Dense(24, activation="relu", name="wide")(inputs)
    model = keras.Model(inputs, outputs)
    kernel, bias = model.get_layer("wide").get_weights()
    applied = LowRank().rewrite(model, {"rank_ratio": 0.25})
    first = applied.model.get_layer("wide_lowrank")
    second = applied.model.get_layer("wide")
    assert first.units == 6 and not first.use_bias
    assert second.activation is model.get_layer("wide").activation
    a, b = split_svd(kernel, 6)
    np.testing.assert_allclose(first.get_weights()[0], a, atol=1e-6)
    np.testing.assert_allclose(second.get_weights()[0], b, atol=1e-6)
    np.testing.assert_array_equal(second.get_weights()[1], bias)
    x = RNG.normal(size=(3, 32)).astype(np.float32)
    expected = np.maximum(x @ (a @ b) + bias, 0)
    np.testing.assert_allclose(np.asarray(applied.model(x)), expected, atol=1e-5)


def test_layers_that_would_not_get_cheaper_are_left_alone_with_a_note() -> None:
    inputs = keras.Input((4,))
    outputs = L.Dense(3, name="tiny")(inputs)
    applied = LowRank().rewrite(keras.Model(inputs, outputs), {"rank_ratio": 0.7})
    assert [layer.name for layer in applied.model.layers][1:] == ["tiny"]
    assert any("tiny: not factorized" in note for note in applied.notes)

"""Kernel reduction: centre taps, output sizes kept for 'same' and 'valid' padding."""

from __future__ import annotations

import numpy as np
import pytest

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.kernels import KernelReduction, centre_crop, reduced_size

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers


def test_reduced_size_steps_odd_kernels_by_two_and_keeps_even_ones() -> None:
    assert [reduced_size(9, s) for s in range(6)] == [9, 7, 5, 3, 1, 1]
    assert reduced_size(4, 1) == 4
    assert reduced_size(1, 3) == 1


def test_centre_crop_picks_the_centre_taps() -> None:
    kernel = np.arange(5 * 5).reshape(5, 5, 1, 1)
    np.testing.assert_array_equal(centre_crop(kernel, (3, 3))[..., 0, 0], kernel[1:4, 1:4, 0, 0])
    np.testing.assert_array_equal(centre_crop(kernel, (1, 3))[..., 0, 0], [[11, 12, 13]])


@pytest.mark.parametrize(
    ("padding", "strides", "dilation"),
    [("same", 1, 1), ("valid", 1, 1), ("valid", 2, 1), ("valid", 1, 2)],
)
def test_reduced_conv_computes_the_centre_taps_of_the_original(
    padding: str, strides: int, dilation: int
) -> None:
    inputs = keras.Input((13, 13, 2))
    outputs = L.Conv2D(3, 5, strides, padding, dilation_rate=dilation, name="conv")(inputs)
    model = keras.Model(inputs, outputs)
    applied = KernelReduction().rewrite(model, {"shrink": 1})
    conv = applied.model.get_layer("conv")
    assert tuple(conv.kernel_size) == (3, 3)
    assert applied.model.outputs[0].shape == model.outputs[0].shape
    if padding == "valid":
        assert any(isinstance(layer, L.Cropping2D) for layer in applied.model.layers)
    # Same computation as the original with its outer ring of taps zeroed.
    kernel, bias = model.get_layer("conv").get_weights()
    ring = np.zeros_like(kernel)
    ring[1:4, 1:4] = kernel[1:4, 1:4]
    model.get_layer("conv").set_weights([ring, bias])
    x = np.random.default_rng(0).normal(size=(2, 13, 13, 2)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(applied.model(x)), np.asarray(model(x)), atol=1e-5)


def test_depthwise_and_non_square_kernels_shrink_per_axis() -> None:
    inputs = keras.Input((8, 8, 4))
    x = L.DepthwiseConv2D((5, 3), padding="same", name="dw")(inputs)
    outputs = L.Conv2D(2, (4, 3), padding="same", name="even")(x)
    applied = KernelReduction().rewrite(keras.Model(inputs, outputs), {"shrink": 2})
    assert tuple(applied.model.get_layer("dw").kernel_size) == (1, 1)
    assert tuple(applied.model.get_layer("even").kernel_size) == (4, 1)


def test_pointwise_convolutions_are_kept_with_a_note() -> None:
    inputs = keras.Input((4, 4, 2))
    outputs = L.Conv2D(2, 1, name="pw")(inputs)
    applied = KernelReduction().rewrite(keras.Model(inputs, outputs), {"shrink": 2})
    assert any("pw: kernel (1, 1) kept" in note for note in applied.notes)

"""Kernel-size reduction: Conv2D/DepthwiseConv2D ``k x k`` -> ``k' x k'`` from the centre taps.

The centre of a trained kernel usually carries most of its energy, so
cropping it is a better start for fine-tuning than a fresh smaller kernel.
Cost falls with ``k'^2 / k^2``, and large kernels (SRCNN's 9x9) dominate
small fully-convolutional models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import Applied, GraphTechnique, layer_value
from devicefit.spaces.graph import graph_view
from devicefit.spaces.params import IntRange
from devicefit.spaces.rebuild import as_functional, clone_with, rebuild, unique_name

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()

SUPPORTED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


def reduced_size(size: int, shrink: int) -> int:
    """Odd sizes lose ``2 * shrink`` taps (down to 1); even sizes have no centre and stay.

    Args:
        size: a kernel axis's size, in taps.
        shrink: the taps removed at each end.

    Returns:
        The axis's new size.
    """
    if size <= 1 or size % 2 == 0:
        return size
    return max(1, size - 2 * shrink)


def centre_crop(kernel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The central ``size`` taps of a ``(kh, kw, ...)`` kernel.

    Args:
        kernel: the kernel, spatial axes first.
        size: the (height, width) kept, each at most the kernel's.

    Returns:
        The cropped kernel (a view), its other axes whole.
    """
    kh, kw = kernel.shape[:2]
    top, left = (kh - size[0]) // 2, (kw - size[1]) // 2
    return kernel[top : top + size[0], left : left + size[1]]


class KernelReduction(GraphTechnique):
    """Shrink every odd spatial kernel axis by ``2 * shrink`` taps, keeping output sizes.

    'same' padding keeps the output size by itself. 'valid' padding would grow
    the output, so a Cropping2D removes ``(k - k') / 2 * dilation`` pixels from
    each border first: the smaller kernel then computes exactly the centre taps
    of the original at every output position. With 'same' padding and stride >
    1, TensorFlow pads asymmetrically and the crop may be off by one pixel;
    fine-tuning absorbs it, and the identity setting is untouched.
    """

    name = "kernel_reduction"
    recipe = {"shrink": 1}  # the one-technique recipe's setting
    structural = True
    default_ranges = {"shrink": IntRange(0, 4)}
    layer_params = {"shrink": IntRange(0, 4)}

    def identity_params(self) -> dict[str, Any]:
        return {"shrink": 0}

    def strong_params(self) -> dict[str, Any]:
        return {"shrink": 4}

    def rewrite(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        functional = as_functional(model)
        view = graph_view(functional)
        shrinks = {name: int(layer_value(params, name, "shrink", 0)) for name in view.order}
        bad = {name: v for name, v in shrinks.items() if v < 0}
        if bad:
            raise ValueError(f"{self.name}.shrink must be >= 0, got {bad}")
        if not any(shrinks.values()):
            return Applied(functional, ["shrink 0: kernels unchanged"])
        taken = set(view.layers)
        replace: dict[str, list[keras.layers.Layer]] = {}
        weights: dict[str, list[np.ndarray]] = {}
        notes: list[str] = []
        for name in view.order:
            layer = view.layers[name]
            if type(layer) not in SUPPORTED:
                continue
            old, shrink = tuple(layer.kernel_size), shrinks[name]
            new = (reduced_size(old[0], shrink), reduced_size(old[1], shrink))
            if new == old:
                notes.append(f"{name}: kernel {old} kept (no odd axis larger than 1)")
                continue
            if layer.data_format != "channels_last":
                notes.append(f"{name}: kernel {old} kept (channels_first)")
                continue
            kernel, *rest = layer.get_weights()
            sequence: list[keras.layers.Layer] = []
            how = ""
            if layer.padding == "valid":
                (dh, dw) = layer.dilation_rate
                crop_h, crop_w = (old[0] - new[0]) // 2 * dh, (old[1] - new[1]) // 2 * dw
                crop_name = unique_name(taken, f"{name}_crop")
                sequence.append(
                    keras.layers.Cropping2D(((crop_h, crop_h), (crop_w, crop_w)), name=crop_name)
                )
                how = f" (valid padding: input cropped by {crop_h}x{crop_w} px per side)"
            sequence.append(clone_with(layer, kernel_size=new))
            replace[name] = sequence
            weights[name] = [centre_crop(kernel, new), *rest]
            notes.append(f"{name}: kernel {old} -> {new}{how}")
        if not replace:
            if not notes:
                notes.append("no Conv2D/DepthwiseConv2D layers")
            return Applied(functional, notes)
        return Applied(rebuild(functional, replace, weights), notes)

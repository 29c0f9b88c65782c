"""Structured channel pruning: drop the Conv2D/Dense filters with the smallest L1 norm.

Li et al., "Pruning Filters for Efficient ConvNets" (2017): a filter's L1 norm
is a cheap, data-free proxy for its importance. Removing filters shrinks the
tensors themselves, so unlike unstructured sparsity it speeds up any runtime.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import Applied, Technique
from devicefit.spaces.chains import chain_indices, channel_chains
from devicefit.spaces.graph import as_functional, clone_with, graph_view, rebuild
from devicefit.spaces.params import FloatRange

silence_tensorflow()

import keras  # noqa: E402


def kept_count(channels: int, ratio: float, multiple: int) -> int:
    """How many of ``channels`` filters survive pruning a fraction ``ratio``.

    The count is rounded to a multiple of ``multiple`` when the layer has at
    least two such groups: XNNPACK's float and int8 kernels process output
    channels in tiles of 4/8/16 lanes, so 61 channels cost as much as 64 and
    the search should not spend trials telling them apart. Smaller layers are
    not rounded, or a ratio could not change them at all.
    """
    keep = max(1, channels - math.floor(ratio * channels + 0.5))
    if keep < channels and channels >= 2 * multiple:
        keep = min(channels, max(multiple, multiple * math.floor(keep / multiple + 0.5)))
    return keep


def l1_ranking(kernel: np.ndarray) -> np.ndarray:
    """Output-channel indices (last kernel axis), largest L1 norm first; ties keep order."""
    norms = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    return np.argsort(-norms, kind="stable")


class ChannelPruning(Technique):
    """Remove a fraction ``ratio`` of each prunable layer's filters (lowest L1 first).

    Prunable layers come from :func:`devicefit.spaces.chains.channel_chains`;
    the matching BatchNormalization parameters and the next Conv2D/Dense's
    input channels (through Flatten's position-major layout) go with them.
    """

    name = "channel_pruning"
    stage = "graph"
    structural = True
    default_ranges = {"ratio": FloatRange(0.0, 0.7)}
    channel_multiple: ClassVar[int] = 4

    def identity_params(self) -> dict[str, Any]:
        return {"ratio": 0.0}

    def strong_params(self) -> dict[str, Any]:
        return {"ratio": 0.7}

    def rewrite(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        ratio = float(params.get("ratio", 0.0))
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"{self.name}.ratio must be in [0, 1), got {ratio}")
        functional = as_functional(model)
        view = graph_view(functional)
        chains, reasons = channel_chains(view)
        notes = [f"{name}: not pruned, {why}" for name, why in reasons.items()]
        out_keep: dict[str, np.ndarray] = {}  # producer -> kept output channels
        in_keep: dict[str, np.ndarray] = {}  # consumer / channel-wise layer -> kept inputs
        for chain in chains:
            kernel = view.layers[chain.producer].get_weights()[0]
            count = kept_count(chain.channels, ratio, self.channel_multiple)
            if count == chain.channels:
                notes.append(f"{chain.producer}: kept all {count} filters at ratio {ratio:.3g}")
                continue
            keep = np.sort(l1_ranking(kernel)[:count])
            out_keep[chain.producer] = keep
            in_keep.update(chain_indices(view, chain, keep))
            notes.append(
                f"{chain.producer}: kept {count}/{chain.channels} filters "
                f"(lowest L1 removed; {chain.consumer} loses the matching inputs)"
            )
        if not out_keep:
            return Applied(functional, notes)
        replace: dict[str, list[keras.layers.Layer]] = {}
        weights: dict[str, list[np.ndarray]] = {}
        for name in sorted(set(out_keep) | set(in_keep)):
            layer = view.layers[name]
            values = layer.get_weights()
            if type(layer) in (keras.layers.Conv2D, keras.layers.Dense):
                values, changes = _slice_weighted(
                    layer, values, in_keep.get(name), out_keep.get(name)
                )
            elif isinstance(layer, keras.layers.DepthwiseConv2D):  # (kh, kw, channels, 1)
                kernel, *bias = values
                keep = in_keep[name]
                values, changes = [kernel[:, :, keep], *(b[keep] for b in bias)], {}
            elif values:  # BatchNormalization: every variable is one value per channel
                values, changes = [v[in_keep[name]] for v in values], {}
            else:
                continue  # weightless channel-wise layer: rebuilt with the new shape anyway
            replace[name] = [clone_with(layer, **changes)]
            weights[name] = values
        return Applied(rebuild(functional, replace, weights), notes)


def _slice_weighted(
    layer: Any, values: list[np.ndarray], inputs: np.ndarray | None, outputs: np.ndarray | None
) -> tuple[list[np.ndarray], dict[str, Any]]:
    kernel, *rest = values
    changes: dict[str, Any] = {}
    if inputs is not None:  # Dense kernel (in, out), Conv2D (kh, kw, in, out)
        kernel = np.take(kernel, inputs, axis=kernel.ndim - 2)
    if outputs is not None:
        kernel = kernel[..., outputs]
        rest = [bias[outputs] for bias in rest]
        key = "units" if isinstance(layer, keras.layers.Dense) else "filters"
        changes[key] = len(outputs)
    return [kernel, *rest], changes

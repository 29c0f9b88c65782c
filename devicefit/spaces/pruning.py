"""Structured channel pruning: drop the Conv2D/Dense filters that matter least.

Two importance measures, chosen by the search:
- ``l1``: Li et al., "Pruning Filters for Efficient ConvNets" (2017): a filter's
  L1 norm, a cheap, data-free proxy.
- ``activation``: the mean magnitude of the channel on training inputs times the
  L1 norm of the next layer's weights reading it. A filter with small weights can
  carry a large signal: SRCNN started as bicubic passes the image through one
  delta filter (L1 = 1, the smallest), and L1 pruning removes it first.
Removing filters shrinks the tensors themselves, so unlike unstructured sparsity
it speeds up any runtime.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import Applied, Technique
from devicefit.spaces.chains import chain_indices, channel_chains
from devicefit.spaces.graph import as_functional, clone_with, graph_view, rebuild
from devicefit.spaces.params import Choice, FloatRange

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
    default_ranges = {"ratio": FloatRange(0.0, 0.7), "importance": Choice(("l1", "activation"))}
    channel_multiple: ClassVar[int] = 4
    max_samples: ClassVar[int] = 64

    def __init__(self) -> None:
        self.samples: np.ndarray | None = None

    def prepare(self, samples: np.ndarray) -> None:
        self.samples = samples[: self.max_samples]

    def identity_params(self) -> dict[str, Any]:
        return {"ratio": 0.0, "importance": "l1"}

    def strong_params(self) -> dict[str, Any]:
        return {"ratio": 0.7, "importance": "l1"}

    def _rankings(
        self, functional: keras.Model, view: Any, chains: list[Any], importance: str
    ) -> tuple[dict[str, np.ndarray], str]:
        """Per producer, its output channels from most to least important."""
        if importance == "activation" and self.samples is not None and chains:
            return activation_rankings(functional, view, chains, self.samples), "activation"
        how = "L1" if importance == "l1" else "L1 (no samples given for activation ranking)"
        ranks = {c.producer: l1_ranking(view.layers[c.producer].get_weights()[0]) for c in chains}
        return ranks, how

    def rewrite(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        ratio = float(params.get("ratio", 0.0))
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"{self.name}.ratio must be in [0, 1), got {ratio}")
        importance = str(params.get("importance", "l1"))
        if importance not in ("l1", "activation"):
            raise ValueError(f"{self.name}.importance must be l1 or activation, got {importance}")
        functional = as_functional(model)
        view = graph_view(functional)
        chains, reasons = channel_chains(view)
        notes = [f"{name}: not pruned, {why}" for name, why in reasons.items()]
        rankings: dict[str, np.ndarray] = {}
        how = importance
        if ratio > 0:  # at ratio 0 every filter stays: no ranking (nor inference) needed
            rankings, how = self._rankings(functional, view, chains, importance)
        out_keep: dict[str, np.ndarray] = {}  # producer -> kept output channels
        in_keep: dict[str, np.ndarray] = {}  # consumer / channel-wise layer -> kept inputs
        for chain in chains:
            count = kept_count(chain.channels, ratio, self.channel_multiple)
            if count == chain.channels:
                notes.append(f"{chain.producer}: kept all {count} filters at ratio {ratio:.3g}")
                continue
            keep = np.sort(rankings[chain.producer][:count])
            out_keep[chain.producer] = keep
            in_keep.update(chain_indices(view, chain, keep))
            notes.append(
                f"{chain.producer}: kept {count}/{chain.channels} filters "
                f"(least important by {how} removed; {chain.consumer} loses the matching inputs)"
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


def activation_rankings(
    functional: keras.Model, view: Any, chains: list[Any], samples: np.ndarray
) -> dict[str, np.ndarray]:
    """Rank each producer's channels by mean |activation| x L1 of the consumer's weights
    on that channel, where the activation is what reaches the consumer (after the
    chain's BatchNorm, activation and pooling layers, before any Flatten)."""
    taps = {}
    for chain in chains:
        spatial = [n for n in chain.through if not isinstance(view.layers[n], keras.layers.Flatten)]
        taps[chain.producer] = spatial[-1] if spatial else chain.producer
    probe = keras.Model(
        functional.inputs, [functional.get_layer(name).output for name in taps.values()]
    )
    outputs = probe.predict(samples, verbose=0, batch_size=16)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    ranks = {}
    for chain, act in zip(chains, outputs, strict=True):
        strength = np.abs(act).reshape(-1, act.shape[-1]).mean(axis=0)
        kernel = view.layers[chain.consumer].get_weights()[0]
        if kernel.ndim == 2:  # Dense, maybe after Flatten: rows are position-major
            use = np.abs(kernel).reshape(-1, chain.channels, kernel.shape[-1]).sum(axis=(0, 2))
        else:  # Conv2D (kh, kw, in, out)
            use = np.abs(kernel).sum(axis=(0, 1, 3))
        ranks[chain.producer] = np.argsort(-(strength * use), kind="stable")
    return ranks


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

"""Structured channel pruning over the channel-dependency graph.

Whole dependency groups (:mod:`devicefit.spaces.graph`) lose the same channels:
every convolution feeding a residual ``Add`` drops the same filters, the
BatchNorm and depthwise layers on the way drop the matching per-channel weights,
and every consumer (including the Dense after a Flatten, and a convolution after
a Concatenate at that input's offset) drops the matching input rows. Removing
filters shrinks the tensors themselves, so unlike unstructured sparsity it
speeds up any runtime.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import PER_LAYER, Applied, GraphTechnique, weighted_layers
from devicefit.spaces.graph import DependencyGraph, dependency_graph
from devicefit.spaces.importance import IMPORTANCES, kernel_axes, rank_groups
from devicefit.spaces.params import Choice, FloatRange
from devicefit.spaces.rebuild import as_functional, clone_with, rebuild
from devicefit.tasks.named_inputs import first_rows

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()

L = keras.layers


def kept_count(channels: int, ratio: float, multiple: int) -> int:
    """How many of ``channels`` filters survive pruning a fraction ``ratio``.

    The count is rounded to a multiple of ``multiple`` when the layer has at
    least two such groups: XNNPACK's float and int8 kernels process output
    channels in tiles of 4/8/16 lanes, so 61 channels cost as much as 64 and
    the search should not spend trials telling them apart. Smaller layers are
    not rounded, or a ratio could not change them at all.

    Args:
        channels: the group's channel count.
        ratio: the fraction removed, in [0, 1).
        multiple: the tile the count is rounded to (``channel_multiple``).

    Returns:
        The channels kept: at least 1, and at least ``multiple`` when rounded.
    """
    keep = max(1, channels - math.floor(ratio * channels + 0.5))
    if keep < channels and channels >= 2 * multiple:
        keep = min(channels, max(multiple, multiple * math.floor(keep / multiple + 0.5)))
    return keep


def l1_ranking(kernel: np.ndarray) -> np.ndarray:
    """Output-channel indices (last kernel axis), largest L1 norm first; ties keep order.

    Args:
        kernel: a kernel whose last axis is its output channels.

    Returns:
        The indices of that axis, sorted.
    """
    norms = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    return np.argsort(-norms, kind="stable")


class ChannelPruning(GraphTechnique):
    """Remove a fraction ``ratio`` of every prunable dependency group's channels.

    A per-layer ``ratio`` set on any producer of a group applies to the whole
    group (per-layer granularity draws one per group, named after its first
    producer); frozen groups are left alone and the notes say why.
    """

    name = "channel_pruning"
    recipe = {"ratio": 0.3, "importance": "activation"}  # the one-technique recipe's setting
    structural = True
    default_ranges = {"ratio": FloatRange(0.0, 0.7), "importance": Choice(IMPORTANCES)}
    layer_params = {"ratio": FloatRange(0.0, 0.7)}
    channel_multiple: ClassVar[int] = 4
    max_samples: ClassVar[int] = 64

    def __init__(self) -> None:
        self.samples: np.ndarray | None = None

    def prepare(self, samples: np.ndarray) -> None:
        self.samples = first_rows(samples, self.max_samples)

    # The ranking the sensitivity profile and the profile plans prune by (they set only
    # per-unit ratios on top of the identity). Activation, not L1: SRCNN's pass-through
    # filter has the smallest L1 norm, and L1 ranking cost 25 dB on every unit and setting
    # of the sr profile where activation ranking cost 0.0-1.0 dB. Without samples
    # (``prepare`` not called) it ranks by L1.
    profiled_importance: ClassVar[str] = "activation"

    def identity_params(self) -> dict[str, Any]:
        return {"ratio": 0.0, "importance": self.profiled_importance}

    def strong_params(self) -> dict[str, Any]:
        return {"ratio": 0.7, "importance": self.profiled_importance}

    def rewrite(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        ratio = _ratio(params.get("ratio", 0.0), "the model")
        importance = str(params.get("importance", "l1"))
        if importance not in IMPORTANCES:
            raise ValueError(
                f"{self.name}.importance must be one of {', '.join(IMPORTANCES)}, got {importance}"
            )
        functional = as_functional(model)
        graph = dependency_graph(functional)
        notes = [f"{g.name}: not pruned, {g.frozen[0]}" for g in graph.frozen() if g.layers("out")]
        counts = {}
        for group in graph.prunable():
            per_layer = params.get(PER_LAYER, {})
            own = [per_layer.get(p, {}).get("ratio") for p in group.layers("out")]
            value = _ratio(next((r for r in own if r is not None), ratio), group.name)
            count = kept_count(group.size, value, self.channel_multiple)
            if count < group.size:
                counts[group.id] = count
        if not counts:
            notes.append(f"kept every channel at ratio {ratio:.3g}")
            return Applied(functional, notes)
        chosen = [graph.groups[gid] for gid in counts]
        rankings, how = rank_groups(graph, chosen, importance, functional, self.samples)
        keep = {gid: np.sort(rankings[gid][:count]) for gid, count in counts.items()}
        for group in chosen:
            producers = ", ".join(group.layers("out"))
            notes.append(
                f"{group.name}: kept {counts[group.id]}/{group.size} channels of "
                f"{producers} (least important by {how[group.id]} removed)"
            )
        replace, weights = sliced_layers(graph, keep)
        return Applied(rebuild(functional, replace, weights), notes)

    def units(
        self, model: keras.Model, granularity: str, blocks: dict[str, list[str]]
    ) -> dict[str, list[str]]:
        if granularity != "per-layer":
            return super().units(model, granularity, blocks)
        graph = dependency_graph(as_functional(model))
        return {group.name: group.layers("out") for group in graph.prunable()}

    def explain(self, model: keras.Model) -> dict[str, tuple[bool, str]]:
        graph = dependency_graph(as_functional(model))
        roles: dict[str, list[tuple[str, Any]]] = {}
        for group in graph.groups.values():
            for member in group.members:
                roles.setdefault(member.layer, []).append((member.role, group))
        result = {}
        for layer in weighted_layers(model):
            if layer.name in graph.notes:
                result[layer.name] = (False, graph.notes[layer.name])
                continue
            mine = [g for role, g in roles.get(layer.name, []) if role in ("out", "pass")]
            if not mine:
                result[layer.name] = (False, "its channels are in no group")
                continue
            group = mine[0]
            if group.frozen:
                result[layer.name] = (False, f"group {group.name} is frozen: {group.frozen[0]}")
                continue
            others = [p for p in group.layers("out") if p != layer.name]
            coupled = f", pruned together with {', '.join(others)}" if others else ""
            result[layer.name] = (True, f"group {group.name}, {group.size} channels{coupled}")
        return result


def _ratio(value: Any, what: str) -> float:
    ratio = float(value)
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"channel_pruning ratio of {what} must be in [0, 1), got {ratio}")
    return ratio


def sliced_layers(
    graph: DependencyGraph, keep: dict[int, np.ndarray]
) -> tuple[dict[str, list[keras.layers.Layer]], dict[str, list[np.ndarray]]]:
    """New layers (same names) and their sliced weights for every layer ``keep`` touches.

    Weightless layers are not replaced: the rebuild calls fresh copies of them on
    the narrower tensors.

    Args:
        graph: the functional model's dependency graph.
        keep: group id -> the sorted indices of the channels it keeps.

    Returns:
        Layer name -> its replacement (one layer; a Reshape gets a narrower target shape),
        and layer name -> the replacement's weights, as ``rebuild`` takes them.
    """
    replace: dict[str, list[keras.layers.Layer]] = {}
    weights: dict[str, list[np.ndarray]] = {}
    for name in graph.view.order:
        layer = graph.view.layers[name]
        if isinstance(layer, L.Reshape) and name not in graph.notes:
            # Its target shape names the channel count: a narrower input needs a new one.
            kept = graph.index(graph.out_layout[name], keep)
            if kept is not None:
                target = (*layer.target_shape[:-1], len(kept))
                replace[name], weights[name] = [clone_with(layer, target_shape=target)], []
            continue
        if not isinstance(layer, keras.layers.Layer) or not layer.weights:
            continue
        layout_in, layout_out = graph.in_layout.get(name), graph.out_layout.get(name)
        in_idx = graph.index(layout_in, keep) if layout_in else None
        out_idx = graph.index(layout_out, keep) if layout_out else None
        if in_idx is None and out_idx is None:
            continue
        if name in graph.notes:
            continue  # unknown layer: its groups are frozen, so this cannot happen
        values, changes = _slice(layer, in_idx, out_idx)
        replace[name] = [clone_with(layer, **changes)]
        weights[name] = values
    return replace, weights


def _slice(
    layer: Any, in_idx: np.ndarray | None, out_idx: np.ndarray | None
) -> tuple[list[np.ndarray], dict[str, Any]]:
    values = layer.get_weights()
    if isinstance(layer, L.SeparableConv2D):
        depthwise, pointwise, *bias = values
        if in_idx is not None:
            depthwise = depthwise[:, :, in_idx]
            pointwise = pointwise[:, :, in_idx]
        if out_idx is None:
            return [depthwise, pointwise, *bias], {}
        bias = [b[out_idx] for b in bias]
        return [depthwise, pointwise[..., out_idx], *bias], {"filters": len(out_idx)}
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv2DTranspose, L.Dense)) and not isinstance(
        layer, L.DepthwiseConv2D
    ):
        kernel, *bias = values
        _, in_axis, out_axis = kernel_axes(layer)
        changes: dict[str, Any] = {}
        if in_idx is not None:
            kernel = np.take(kernel, in_idx, axis=in_axis)
        if out_idx is not None:
            kernel = np.take(kernel, out_idx, axis=out_axis)
            bias = [b[out_idx] for b in bias]
            changes["units" if isinstance(layer, L.Dense) else "filters"] = len(out_idx)
        return [kernel, *bias], changes
    # Channel-wise layers: the depthwise kernel (kh, kw, channels, 1) on axis 2, every
    # other weight (BatchNorm, LayerNorm, PReLU, depthwise bias) on its last axis.
    index = in_idx if in_idx is not None else out_idx
    assert index is not None  # the caller skips a layer with neither
    if isinstance(layer, L.DepthwiseConv2D):
        kernel, *bias = values
        return [kernel[:, :, index], *(b[index] for b in bias)], {}
    return [np.take(v, index, axis=-1) for v in values], {}

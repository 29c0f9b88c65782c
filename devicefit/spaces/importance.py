"""How much each channel of a dependency group matters, for channel pruning.

- ``l1`` / ``l2``: Li et al., "Pruning Filters for Efficient ConvNets" (2017): the
  norm of the filters that make the channel, cheap and data-free. A group with
  several producers (the convolutions feeding a residual ``Add``) sums each
  producer's norms divided by that producer's mean, so no layer dominates by scale.
- ``bn_scale``: Liu et al., "Network Slimming" (2017): |gamma| of the BatchNorm
  layers the channel passes through, the scale the network itself learnt for it.
- ``activation``: the mean magnitude of the channel where a consumer reads it,
  on training inputs, times the L1 norm of that consumer's weights on it. A filter
  with small weights can carry a large signal: SRCNN started as bicubic passes the
  image through one delta filter (L1 = 1, the smallest), and L1 removes it first.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.eager_predict import eager_predict
from devicefit.spaces.graph import DependencyGraph, Group
from devicefit.tasks.named_inputs import content_digest

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()

L = keras.layers
IMPORTANCES = ("l1", "l2", "bn_scale", "activation")


def kernel_axes(layer: Any) -> tuple[np.ndarray, int, int]:
    """(the kernel that makes the layer's channels, its input axis, its output axis).

    Args:
        layer: a producer layer (Conv, Conv2DTranspose, Dense, SeparableConv2D).

    Returns:
        The kernel (a SeparableConv2D's pointwise one), the axis indexing its input channels
        and the axis indexing its output channels.
    """
    weights = layer.get_weights()
    if isinstance(layer, L.SeparableConv2D):
        return weights[1], 2, 3  # the pointwise (1, 1, in, out) kernel
    if isinstance(layer, L.Conv2DTranspose):
        return weights[0], 3, 2  # (kh, kw, out, in)
    kernel = weights[0]
    return kernel, kernel.ndim - 2, kernel.ndim - 1


def filter_norms(layer: Any, order: int) -> np.ndarray:
    """The norm of each filter ``layer`` makes a channel with.

    Args:
        layer: a producer layer (see ``kernel_axes``).
        order: 1 for the L1 norm, 2 for L2.

    Returns:
        One norm per output channel.
    """
    kernel, _, out_axis = kernel_axes(layer)
    flat = np.moveaxis(np.abs(kernel), out_axis, -1).reshape(-1, kernel.shape[out_axis])
    return (flat**order).sum(axis=0) ** (1.0 / order)


def _normalized(values: np.ndarray) -> np.ndarray:
    mean = float(np.mean(values))
    return values / mean if mean > 0 else values


def rank_groups(
    graph: DependencyGraph,
    groups: list[Group],
    importance: str,
    model: keras.Model,
    samples: np.ndarray | None,
) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Per group, its channels from most to least important, and the measure used.

    Args:
        graph: the model's dependency graph.
        groups: the groups to rank.
        importance: one of ``IMPORTANCES``.
        model: the functional model ``graph`` describes, run for ``activation``.
        samples: training inputs for ``activation``; None ranks by L1 instead.

    Returns:
        Group id -> its channel indices, most important first; and group id -> the measure
        used, as the notes name it (e.g. "L1 (no BatchNorm on the group)").
    """
    scores: dict[int, np.ndarray] = {}
    how: dict[int, str] = {}
    taps = {}
    if importance == "activation" and samples is not None:
        taps = _consumer_inputs(graph, groups, model, samples)
    for group in groups:
        score: np.ndarray | int | None = None  # int: sum() of a group with no layers is 0
        used = importance
        if importance == "bn_scale":
            score = _bn_scale(graph, group)
            used = "BatchNorm scale" if score is not None else "L1 (no BatchNorm on the group)"
        elif importance == "activation":
            score = _activation(graph, group, taps) if taps else None
            if score is None:
                why = "no samples given" if samples is None else "no consumer reads the group"
                used = f"L1 ({why} for activation ranking)"
        if score is None:
            order = 2 if importance == "l2" else 1
            used = {"l1": "L1", "l2": "L2"}.get(used, used)
            score = sum(
                _normalized(filter_norms(graph.view.layers[p], order)) for p in group.layers("out")
            )
        scores[group.id] = np.argsort(-np.asarray(score), kind="stable")
        how[group.id] = used
    return scores, how


def _bn_scale(graph: DependencyGraph, group: Group) -> np.ndarray | None:
    total = None
    for member in group.members:
        layer = graph.view.layers[member.layer]
        if member.role != "pass" or not isinstance(layer, L.BatchNormalization) or not layer.scale:
            continue
        gamma = np.abs(layer.get_weights()[0][member.offset : member.offset + group.size])
        total = _normalized(gamma) if total is None else total + _normalized(gamma)
    return total


def _consumer_inputs(
    graph: DependencyGraph, groups: list[Group], model: keras.Model, samples: np.ndarray
) -> dict[str, np.ndarray]:
    """Mean |input| per channel of every consumer of ``groups``, from one inference pass."""
    sources = {}
    for group in groups:
        for name in group.layers("in"):
            sources[name] = graph.view.inputs[name][0]
    if not sources:
        return {}
    means = _source_means(model, sorted(set(sources.values())), samples)
    return {consumer: means[source] for consumer, source in sources.items()}


# Mean |output| per channel of a model's layers on some samples, by the model's fingerprint.
# Most pruned candidates start from the untouched model (channel pruning comes first in a
# plan), so a worker would run the same inference pass for each of them: about half of a
# pruned candidate's build time, which a candidate the search stops early pays in full.
_MEANS: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
_MEANS_KEPT = 8  # models; a few vectors each
_MEANS_LOCK = threading.Lock()


def _source_means(model: keras.Model, names: list[str], samples: np.ndarray) -> dict[str, Any]:
    """Mean |output| per channel of the layers ``names`` of ``model`` on ``samples``; an
    inference pass only for those this process has not seen for the same model (its
    architecture and weights) and samples."""
    key = fingerprint(model, samples)
    with _MEANS_LOCK:
        known = dict(_MEANS.get(key, {})) if key is not None else {}
    missing = [n for n in names if n not in known]
    if missing:
        probe = keras.Model(model.inputs, [model.get_layer(n).output for n in missing])
        outputs = eager_predict(probe, samples)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        for name, act in zip(missing, outputs, strict=True):
            mean = np.abs(act).reshape(-1, act.shape[-1]).mean(axis=0)
            mean.setflags(write=False)  # shared by every candidate that reads it
            known[name] = mean
    if key is not None:
        with _MEANS_LOCK:
            _MEANS[key] = {**_MEANS.get(key, {}), **known}
            _MEANS.move_to_end(key)
            while len(_MEANS) > _MEANS_KEPT:
                _MEANS.popitem(last=False)
    return {n: known[n] for n in names}


def fingerprint(model: keras.Model, samples: np.ndarray) -> str | None:
    """A digest of ``model``'s architecture (its layers, their settings and how they
    connect), every weight (BatchNorm statistics included) and ``samples``: equal exactly
    when an inference pass gives equal outputs.

    Args:
        model: the Keras model.
        samples: the inputs the pass runs on.

    Returns:
        The hex SHA-256 digest. None for a model that cannot say its architecture (a custom
        layer without ``get_config``, or a config holding an object's address): never cached.
    """
    try:
        config = {k: v for k, v in model.get_config().items() if k != "name"}  # not wiring
        text = json.dumps(config, sort_keys=True, default=repr)
    except (NotImplementedError, TypeError, ValueError):
        return None
    if " at 0x" in text:  # an object's repr with its address: not the same on a copy
        return None
    digest = hashlib.sha256(text.encode())
    for weight in model.get_weights():
        digest.update(f"{weight.dtype}{weight.shape}".encode())
        digest.update(np.ascontiguousarray(weight).tobytes())
    digest.update(content_digest(samples).encode())
    return digest.hexdigest()


def _activation(graph: DependencyGraph, group: Group, taps: dict[str, np.ndarray]) -> Any:
    total = None
    for member in group.members:
        if member.role != "in" or member.layer not in taps:
            continue
        layout = graph.in_layout[member.layer]
        strength = taps[member.layer]  # flattened inputs: (positions * channels,)
        kernel, in_axis, _ = kernel_axes(graph.view.layers[member.layer])
        rows = np.moveaxis(np.abs(kernel), in_axis, 0).reshape(kernel.shape[in_axis], -1).sum(1)
        use = (strength * rows).reshape(layout.positions, layout.channels).sum(axis=0)
        part = use[member.offset : member.offset + group.size]
        total = _normalized(part) if total is None else total + _normalized(part)
    return total

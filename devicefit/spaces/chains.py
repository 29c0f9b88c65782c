"""Channel dependency chains: which Conv2D/Dense outputs can lose channels without side effects.

A layer is prunable when its output reaches exactly one Conv2D/Dense consumer
through layers that treat channels independently; then removing output
channel ``k`` only removes input channel ``k`` (or its flattened positions)
of that consumer. Branches (a residual Add, a Concatenate, two readers),
model outputs and shared layers couple channels across layers, so those
layers are left alone and the reason is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.graph import GraphView, plain_weights

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers
# Layers through which channel k stays channel k (Flatten: position-major, see
# chain_indices). DepthwiseConv2D (multiplier 1) filters each channel alone, so
# MobileNet-style conv -> depthwise -> conv blocks prune like conv -> conv.
CHANNELWISE = (
    L.BatchNormalization, L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.Dropout, L.Flatten,
    L.MaxPooling2D, L.AveragePooling2D, L.GlobalAveragePooling2D, L.GlobalMaxPooling2D,
    L.ZeroPadding2D, L.DepthwiseConv2D,
)  # fmt: skip
# Elementwise activations only: softmax-like ones mix channels, and unknown ones might.
ELEMENTWISE = {
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish",
    "hard_silu", "hard_swish", "sigmoid", "hard_sigmoid", "tanh", "hard_tanh", "softplus",
    "softsign", "mish", "exponential", "celu", "log_sigmoid",
}  # fmt: skip


@dataclass(frozen=True)
class Chain:
    producer: str  # Conv2D/Dense whose output channels may be removed
    through: tuple[str, ...]  # channel-wise layers in between, in order
    consumer: str  # the only Conv2D/Dense reading those channels
    channels: int  # producer's output channel count


def is_weighted(layer: Any) -> bool:
    """A plain Conv2D or Dense (subclasses may change the maths, so exact types)."""
    return type(layer) in (L.Conv2D, L.Dense)


def channel_chains(view: GraphView) -> tuple[list[Chain], dict[str, str]]:
    """Prunable chains, and for every other Conv2D/Dense the reason it is not prunable."""
    chains: list[Chain] = []
    reasons: dict[str, str] = {}
    for name in view.order:
        layer = view.layers[name]
        if not is_weighted(layer):
            continue
        chain_or_reason = _follow(view, name)
        if isinstance(chain_or_reason, Chain):
            chains.append(chain_or_reason)
        else:
            reasons[name] = chain_or_reason
    return chains, reasons


def _follow(view: GraphView, name: str) -> Chain | str:
    if name in view.outputs:
        return "it is a model output"
    problem = _layer_problem(view, name, as_producer=True)
    if problem:
        return problem
    through: list[str] = []
    current = name
    while True:
        if current in view.outputs:
            return f"its output reaches a model output via {current!r}"
        readers = view.consumers.get(current, [])
        if len(readers) != 1:
            return f"{current!r} feeds {len(readers)} layers ({', '.join(readers)}): coupled"
        nxt = readers[0]
        layer = view.layers[nxt]
        if is_weighted(layer):
            problem = _layer_problem(view, nxt, as_producer=False)
            if problem:
                return f"consumer {problem}"
            out_shape = view.shapes[name][1]
            return Chain(name, tuple(through), nxt, int(out_shape[-1]))
        problem = _through_problem(view, nxt)
        if problem:
            return problem
        through.append(nxt)
        current = nxt


def _layer_problem(view: GraphView, name: str, as_producer: bool) -> str | None:
    layer = view.layers[name]
    if view.calls.get(name, 0) != 1:
        return f"{name!r} is called {view.calls.get(name, 0)} times (shared)"
    if not plain_weights(layer):
        return f"{name!r} has extra weights (LoRA or quantized)"
    if isinstance(layer, L.Conv2D):
        if layer.groups != 1:
            return f"{name!r} is a grouped convolution"
        if layer.data_format != "channels_last":
            return f"{name!r} is channels_first"
    if as_producer:
        act = _activation_name(layer.activation)
        if act not in ELEMENTWISE:
            return f"{name!r} has activation {act!r}, which mixes channels"
        if view.shapes[name][1][-1] is None:
            return f"{name!r} has an unknown channel count"
    return None


def _through_problem(view: GraphView, name: str) -> str | None:
    layer = view.layers[name]
    kind = type(layer).__name__
    if type(layer) not in CHANNELWISE:
        return f"its output flows into {kind} {name!r}, which is not channel-wise"
    if view.calls.get(name, 0) != 1:
        return f"{kind} {name!r} is shared"
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return f"{kind} {name!r} is channels_first"
    in_shape = view.shapes[name][0]
    if isinstance(layer, L.BatchNormalization) and layer.axis not in (-1, len(in_shape) - 1):
        return f"BatchNormalization {name!r} normalizes axis {layer.axis}, not channels"
    if isinstance(layer, L.Activation):
        act = _activation_name(layer.activation)
        if act not in ELEMENTWISE:
            return f"Activation {name!r} is {act!r}, which mixes channels"
    if isinstance(layer, L.DepthwiseConv2D) and layer.depth_multiplier != 1:
        return f"DepthwiseConv2D {name!r} has depth multiplier {layer.depth_multiplier}"
    if isinstance(layer, L.DepthwiseConv2D):
        act = _activation_name(layer.activation)
        if act not in ELEMENTWISE:
            return f"DepthwiseConv2D {name!r} has activation {act!r}, which mixes channels"
    if isinstance(layer, L.Flatten) and any(d is None for d in in_shape[1:]):
        return f"Flatten {name!r} has an input of unknown size {in_shape}"
    return None


def _activation_name(fn: Any) -> str:
    try:
        name = keras.activations.serialize(fn)
    except Exception:  # noqa: BLE001 - unserializable custom activation
        return repr(fn)
    return name if isinstance(name, str) else repr(name)


def chain_indices(view: GraphView, chain: Chain, keep: np.ndarray) -> dict[str, np.ndarray]:
    """For each layer after the producer, the indices its channel axis keeps.

    Before a Flatten the index is the channel; channels-last flattening puts
    channel ``c`` of spatial position ``p`` at ``p * channels + c``, so after it
    every position keeps the same channels.
    """
    index = np.sort(np.asarray(keep, dtype=np.int64))
    out: dict[str, np.ndarray] = {}
    for name in chain.through:
        if isinstance(view.layers[name], L.Flatten):
            in_shape = view.shapes[name][0]
            positions = prod(int(d) for d in in_shape[1:-1])
            channels = int(in_shape[-1])
            index = (np.arange(positions)[:, None] * channels + index[None, :]).ravel()
        out[name] = index
    out[chain.consumer] = index
    return out

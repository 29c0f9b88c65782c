"""Where a file's time goes, per Keras layer and per block.

Ops are traced back to the layers they came from by the graph first and names second:
- an op with weights (conv, depthwise conv, dense, transpose conv) belongs to the layer whose
  kernel it holds (same kind and shape, claimed in graph order; ``locate_layers``);
- any other op by its output tensor names, "<model>/<layer>_<n>/<tf op>" joined by ";" for
  fused ops: the layer that name points at, or, when it points at several (an ADD fused
  with the ReLU after it), the one whose class makes that kind of op.
An op no layer explains (the QUANTIZE the converter adds at the input, a name that points
nowhere or at several layers alike) stays unmapped under its kind and tensor name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from devicefit.evaluators.op_attribution import FileOp, OpTime, file_ops
from devicefit.spaces.blocks import block_of, find_blocks
from devicefit.spaces.graph import dependency_graph
from devicefit.spaces.mixed_precision import locate_layers

# The Keras layer classes whose call makes each kind of op (to choose among fused names).
_MAKERS: dict[str, tuple[str, ...]] = {
    "ADD": ("Add",),
    "SUB": ("Subtract",),
    "MUL": ("Multiply",),
    "CONCATENATION": ("Concatenate",),
    "MAX_POOL_2D": ("MaxPooling2D",),
    "AVERAGE_POOL_2D": ("AveragePooling2D",),
    "MEAN": ("GlobalAveragePooling2D", "GlobalAveragePooling1D"),
    "RESHAPE": ("Reshape", "Flatten"),
    "RESIZE_BILINEAR": ("UpSampling2D", "Resizing"),
    "RESIZE_NEAREST_NEIGHBOR": ("UpSampling2D", "Resizing"),
    "SOFTMAX": ("Softmax", "Activation", "Dense"),
    "PAD": ("ZeroPadding2D",),
}
_SUFFIX = re.compile(r"_\d+$")
# Ops a layer's own activation makes after its main op (Dense(..., activation="softmax")).
_ACTIVATIONS = {
    "SOFTMAX": "softmax",
    "LOGISTIC": "sigmoid",
    "TANH": "tanh",
    "HARD_SWISH": "hard_silu",
}


@dataclass(frozen=True)
class LayerTimes:
    """Profiled time per layer and block, per run, in milliseconds."""

    layers: dict[str, float]  # layer -> ms, every layer with time
    blocks: dict[str, float]  # block -> ms (the layers of each block summed)
    # channel group -> ms of the layers whose output channels it is (what pruning it thins)
    groups: dict[str, float]
    unmapped: dict[str, float]  # "<KIND> <tensor name>" or a profile's label -> ms
    run_ms: float  # the profiled runs' own time, for the shares

    @property
    def total_ms(self) -> float:
        return sum(self.layers.values()) + sum(self.unmapped.values())

    def to_dict(self) -> dict[str, Any]:
        """The times as JSON-ready data.

        Returns:
            Field name -> value: ms per layer, block, channel group and unmapped op, and ``run_ms``.
        """
        return {
            "layers": self.layers,
            "blocks": self.blocks,
            "groups": self.groups,
            "unmapped": self.unmapped,
            "run_ms": self.run_ms,
        }


def op_layers(model: Any, tflite: bytes, ops: list[FileOp] | None = None) -> dict[int, str]:
    """Op index in the file -> the Keras layer it came from, for the ops that can be told.

    Args:
        model: the Keras model the file was converted from.
        tflite: the file's bytes.
        ops: the file's ops when the caller has parsed them; None parses ``tflite``.

    Returns:
        Op index -> layer name; ops no layer explains are left out.
    """
    ops = ops if ops is not None else file_ops(tflite)
    owner: dict[int, str] = {}
    for name, located in locate_layers(model, tflite).items():
        for weighted in located:
            owner[weighted.index] = name
    classes = {layer.name: type(layer).__name__ for layer in model.layers}
    for op in ops:
        if op.index in owner:
            continue
        named = _named_layer(op, classes)
        if named is not None:
            owner[op.index] = named
    # The graph: an unnamed activation op ("StatefulPartitionedCall:0" at the output) whose
    # one input comes from a layer with that activation is that layer's.
    producer = {t: op.index for op in ops for t in op.output_ids}
    layers = {layer.name: layer for layer in model.layers}
    for op in ops:
        wanted = _ACTIVATIONS.get(op.kind)
        if op.index in owner or wanted is None or len(op.inputs) != 1:
            continue
        source = owner.get(producer.get(op.inputs[0], -1))
        activation = getattr(layers.get(source), "activation", None)
        if source is not None and getattr(activation, "__name__", "") == wanted:
            owner[op.index] = source
    return owner


def _named_layer(op: FileOp, classes: dict[str, str]) -> str | None:
    found: list[str] = []
    for name in op.outputs:
        for path in name.split(";"):
            for part in path.split("/")[1:]:  # the first part is the model's own name
                layer = part if part in classes else _SUFFIX.sub("", part)
                if layer in classes and layer not in found:
                    found.append(layer)
    if len(found) == 1:
        return found[0]
    makers = [layer for layer in found if classes[layer] in _MAKERS.get(op.kind, ())]
    return makers[0] if len(makers) == 1 else None


def layer_times(model: Any, tflite: bytes, times: list[OpTime], run_ms: float) -> LayerTimes:
    """Roll ``times`` (from ``op_attribution.attribute``) up to layers and blocks.

    Args:
        model: the Keras model the file was converted from.
        tflite: the profiled file's bytes.
        times: each op's time per run.
        run_ms: the profiled runs' own time per run, in ms.

    Returns:
        The ms per run of each layer, block and channel group, and of each op no layer
        explains (by "<KIND> <tensor name>", or the profile's label).
    """
    parsed = file_ops(tflite)  # read once, for the owners and the unmapped labels
    owner = op_layers(model, tflite, parsed)
    ops = {op.index: op for op in parsed}
    per_layer: dict[str, float] = {}
    unmapped: dict[str, float] = {}
    for item in times:
        layer = owner.get(item.op) if item.op is not None else None
        if layer is not None:
            per_layer[layer] = per_layer.get(layer, 0.0) + item.ms
            continue
        label = item.label
        if item.op is not None:
            label = f"{ops[item.op].kind} {ops[item.op].outputs[0] if ops[item.op].outputs else ''}"
        unmapped[label.strip()] = unmapped.get(label.strip(), 0.0) + item.ms
    blocks: dict[str, float] = {}
    groups: dict[str, float] = {}
    graph = dependency_graph(model)
    block = block_of(find_blocks(graph.view))
    for layer, ms in per_layer.items():
        name = block.get(layer)
        if name is not None:
            blocks[name] = blocks.get(name, 0.0) + ms
        group = graph.group_of(layer)
        if group is not None:
            groups[group.name] = groups.get(group.name, 0.0) + ms
    return LayerTimes(per_layer, blocks, groups, unmapped, run_ms)

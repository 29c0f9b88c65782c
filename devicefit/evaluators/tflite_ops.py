"""The weighted ops of a TFLite file, with the types their weights and outputs are stored in.

Used to find each Keras layer's ops in a converted file (by kernel shape, in
order) and to read back the bit-widths a mixed-precision recipe produced: a
weight-only quantized op reads its kernel through a DEQUANTIZE op, so the stored
type is the one before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devicefit.evaluators.tflite_stats import _op_names, _schema

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


@dataclass(frozen=True)
class WeightedOp:
    index: int
    kind: str  # builtin operator name, e.g. CONV_2D
    output_name: str
    weight_shape: tuple[int, ...]
    weight_type: str  # as stored in the file: FLOAT32, FLOAT16, INT8, INT4...
    input_type: str  # the activation the op reads
    output_type: str  # the activation it writes


def weighted_ops(tflite: bytes) -> list[WeightedOp]:
    """Every conv / fully-connected op in execution order (first subgraph).

    Args:
        tflite: a converted TFLite file.

    Returns:
        One :class:`WeightedOp` per CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED or
        TRANSPOSE_CONV op, its weight type as stored (before any DEQUANTIZE).
    """
    schema = _schema()
    model = schema.Model.GetRootAs(tflite, 0)
    graph = model.Subgraphs(0)
    names = _op_names(schema)
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    ops, dequantized_from = _ops_and_dequantized(model, graph, names)
    found = []
    for j, kind, ins, outs in ops:
        if kind not in WEIGHTED_OPS or not outs:
            continue
        weight_at = 1  # TRANSPOSE_CONV's inputs are (output shape, weights, x)
        data_at = 2 if kind == "TRANSPOSE_CONV" else 0
        if len(ins) <= max(weight_at, data_at) or ins[weight_at] < 0:
            continue
        weight = ins[weight_at]
        stored = dequantized_from.get(weight, weight)
        out = _tensor(graph, outs[0])
        found.append(
            WeightedOp(
                index=j,
                kind=kind,
                output_name=(out.Name() or b"").decode(errors="replace"),
                weight_shape=tuple(_tensor(graph, weight).ShapeAsNumpy().tolist()),
                weight_type=types.get(_tensor(graph, stored).Type(), "?"),
                input_type=types.get(_tensor(graph, ins[data_at]).Type(), "?"),
                output_type=types.get(out.Type(), "?"),
            )
        )
    return found


def _ops_and_dequantized(
    model: Any, graph: Any, names: dict[int, str]
) -> tuple[list[tuple[int, str, list[int], list[int]]], dict[int, int]]:
    """The subgraph's ops as (index, kind, inputs, outputs), and DEQUANTIZE output -> input."""
    dequantized_from: dict[int, int] = {}  # DEQUANTIZE output tensor -> its input tensor
    ops = []
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        ins = op.InputsAsNumpy().tolist() if op.InputsLength() else []
        outs = op.OutputsAsNumpy().tolist() if op.OutputsLength() else []
        if kind == "DEQUANTIZE" and ins and outs:
            dequantized_from[outs[0]] = ins[0]
        ops.append((j, kind, ins, outs))
    return ops, dequantized_from


def _tensor(graph: Any, index: int) -> Any:  # Any: a flatbuffers-generated type
    """The first subgraph's tensor ``index``.

    Args:
        graph: the model's first subgraph.
        index: the tensor's index in the subgraph.

    Returns:
        The flatbuffer's accessor for that tensor (name, shape, type).
    """
    return graph.Tensors(index)

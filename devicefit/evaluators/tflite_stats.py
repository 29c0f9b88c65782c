"""Size, MACs and parameter count read from a TFLite flatbuffer's ops and tensor shapes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devicefit.errors import TrialFailed


@dataclass
class FileStats:
    size_bytes: int
    macs: int
    params: int
    ops: dict[str, int] = field(default_factory=dict)


def _schema():  # noqa: ANN202 - generated module
    # The generated flatbuffer schema ships with TensorFlow and with ai-edge-litert
    # under different module paths; the host has at least one.
    try:
        from tensorflow.lite.python import schema_py_generated as schema
    except ImportError:  # pragma: no cover - agent-only installs
        from ai_edge_litert import schema_py_generated as schema
    return schema


def _op_names(schema) -> dict[int, str]:  # noqa: ANN001 - a generated flatbuffer class
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def tflite_stats(tflite: bytes) -> FileStats:
    """MACs of the compute-heavy ops and the number of constant weight elements.

    MACs count multiply-accumulates per inference at the file's shapes (batch 1):
    CONV_2D out_elems*kh*kw*cin, DEPTHWISE_CONV_2D out_elems*kh*kw,
    FULLY_CONNECTED out_elems*in, TRANSPOSE_CONV in_elems*kh*kw*cout,
    BATCH_MATMUL out_elems*k. Elementwise ops are not counted: they are not what
    compression removes and they are small next to these.

    Args:
        tflite: the TFLite file.

    Returns:
        The file's size in bytes, its MACs, its constant weight elements (biases
        included) and how many ops of each kind it has.

    Raises:
        TrialFailed: the bytes are not a TFLite flatbuffer.
    """
    schema = _schema()
    try:
        model = schema.Model.GetRootAs(tflite, 0)
        graph = model.Subgraphs(0)
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer fails in many ways
        raise TrialFailed(f"not a TFLite flatbuffer: {exc}") from exc
    names = _op_names(schema)
    shapes = _tensor_shapes(graph)
    constant = set()
    for i in range(graph.TensorsLength()):
        buf = model.Buffers(graph.Tensors(i).Buffer())
        if buf is not None and (buf.DataLength() > 0 or buf.Size() > 0):
            constant.add(i)
    macs, ops = _macs_and_op_counts(model, graph, names, shapes)
    params = sum(
        int(np.prod(shapes[i])) for i in constant if len(shapes[i]) >= 1 and _is_weight(graph, i)
    )
    return FileStats(len(tflite), int(macs), int(params), dict(ops))


def _tensor_shapes(graph: Any) -> list[tuple[int, ...]]:
    """Every tensor's shape in the subgraph, by tensor index, with open dimensions as 1."""
    shapes = [
        tuple(graph.Tensors(i).ShapeAsNumpy().tolist() or ()) for i in range(graph.TensorsLength())
    ]
    return [tuple(max(1, d) for d in s) for s in shapes]  # -1 (open batch) counts as 1


def _macs_and_op_counts(
    model: Any, graph: Any, names: dict[int, str], shapes: list[tuple[int, ...]]
) -> tuple[int, Counter[str]]:
    """The subgraph's MACs summed over its ops, and how many ops of each kind it has."""
    macs = 0
    ops: Counter[str] = Counter()
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, f"OP_{builtin}")
        ops[name] += 1
        ins = [k for k in op.InputsAsNumpy().tolist()] if op.InputsLength() else []
        outs = op.OutputsAsNumpy().tolist() if op.OutputsLength() else []
        macs += _op_macs(
            name, [shapes[k] if k >= 0 else () for k in ins], [shapes[k] for k in outs]
        )
    return macs, ops


def _is_weight(graph, index: int) -> bool:  # noqa: ANN001 - a generated flatbuffer class
    # int32 constants are shapes, axes and biases of int8 models; count biases
    # (rank 1) but not shape vectors by excluding int32 tensors that name no weights.
    tensor = graph.Tensors(index)
    name = (tensor.Name() or b"").decode(errors="replace").lower()
    return not (tensor.Type() == 2 and ("shape" in name or "axis" in name or "perm" in name))


def _op_macs(name: str, ins: list[tuple[int, ...]], outs: list[tuple[int, ...]]) -> int:
    if not outs or not ins:
        return 0
    out = int(np.prod(outs[0])) if outs[0] else 0
    if name == "CONV_2D" and len(ins) >= 2 and len(ins[1]) == 4:
        _, kh, kw, cin = ins[1]
        return out * kh * kw * cin
    if name == "DEPTHWISE_CONV_2D" and len(ins) >= 2 and len(ins[1]) == 4:
        _, kh, kw, _ = ins[1]
        return out * kh * kw
    if name == "FULLY_CONNECTED" and len(ins) >= 2 and len(ins[1]) == 2:
        return out * ins[1][1]
    if name == "TRANSPOSE_CONV" and len(ins) >= 3 and len(ins[1]) == 4:
        cout, kh, kw, _ = ins[1]
        return int(np.prod(ins[2])) * kh * kw * cout
    if name == "BATCH_MATMUL" and len(ins) >= 2 and ins[0]:
        return out * ins[0][-1]
    if name == "CONV_3D" and len(ins) >= 2 and len(ins[1]) == 5:
        kd, kh, kw, cin, _ = ins[1]
        return out * kd * kh * kw * cin
    return 0

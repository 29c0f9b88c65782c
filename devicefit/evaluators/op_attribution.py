"""Which op of the TFLite file each profiled op's time belongs to.

A profile names ops two ways (LiteRT's profiler and benchmark_model alike): an op the
runtime ran itself carries its node index, which is the op's index in the file; an op run
inside an XNNPACK partition carries only XNNPACK's operator name ("Convolution (NHWC, F32)
IGEMM") and its position in the partition. Partitions are the runs of consecutive delegated
ops between the ops the runtime kept, in order. Inside one, XNNPACK's operators follow the
file's ops in order, one "main" operator per op (a concatenation: one Copy per input) plus
helpers XNNPACK adds (a Static Reshape before a Fully Connected, a Convert). Each operator
is matched to the op whose kind it implements; where the sequence does not fit that
pattern, the partition's time is reported as unmapped, with XNNPACK's names, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devicefit.evaluators.tflite_stats import _op_names, _schema

# XNNPACK operator names (their prefix before " (") that implement each TFLite op. Binary
# and unary elementwise ops carry their own name in older XNNPACK and a generic one in newer.
_BINARY = ("Binary Elementwise",)
_UNARY = ("Unary Elementwise",)
MAIN_OPERATORS: dict[str, tuple[str, ...]] = {
    # XNNPACK runs a 1x1 stride-1 convolution as a Fully Connected operator.
    "CONV_2D": ("Convolution", "Fully Connected"),
    "DEPTHWISE_CONV_2D": ("Convolution",),
    "TRANSPOSE_CONV": ("Deconvolution",),
    "FULLY_CONNECTED": ("Fully Connected",),
    "BATCH_MATMUL": ("Batch Matrix Multiply", "Fully Connected"),
    "MAX_POOL_2D": ("Max Pooling", "Argmax Pooling"),
    "AVERAGE_POOL_2D": ("Average Pooling", "Global Average Pooling"),
    "MEAN": ("Global Average Pooling", "Mean", "Reduce", "Sum"),
    "ADD": ("Add", *_BINARY),
    "SUB": ("Subtract", *_BINARY),
    "MUL": ("Multiply", *_BINARY),
    "DIV": ("Divide", *_BINARY),
    "MAXIMUM": ("Maximum", *_BINARY),
    "MINIMUM": ("Minimum", *_BINARY),
    "SQUARED_DIFFERENCE": ("Squared Difference", *_BINARY),
    "CONCATENATION": ("Concatenate", "Copy"),
    "RESHAPE": ("Static Reshape", "Copy"),
    "SQUEEZE": ("Static Reshape", "Copy"),
    "EXPAND_DIMS": ("Static Reshape", "Copy"),
    "TRANSPOSE": ("Transpose",),
    "PAD": ("Constant Pad",),
    "SLICE": ("Slice",),
    "STRIDED_SLICE": ("Slice",),
    "SPLIT": ("Slice", "Copy", "Split"),
    "RESIZE_BILINEAR": ("Resize Bilinear",),
    "RESIZE_NEAREST_NEIGHBOR": ("Resize Nearest", "Resize Bilinear"),
    "DEPTH_TO_SPACE": ("Depth To Space",),
    "SPACE_TO_DEPTH": ("Space To Depth",),
    "SOFTMAX": ("SoftMax", "Softmax"),
    "LOGISTIC": ("Sigmoid", *_UNARY),
    "TANH": ("TanH", "Tanh", *_UNARY),
    "HARD_SWISH": ("HardSwish", "Hard Swish", *_UNARY),
    "RELU": ("Clamp", "ReLU", *_UNARY),
    "RELU6": ("Clamp", *_UNARY),
    "RELU_N1_TO_1": ("Clamp", *_UNARY),
    "LEAKY_RELU": ("Leaky ReLU", *_UNARY),
    "PRELU": ("PReLU",),
    "ELU": ("ELU", *_UNARY),
    "GELU": ("GELU", *_UNARY),
    "ABS": ("Abs", *_UNARY),
    "NEG": ("Negate", *_UNARY),
    "SQUARE": ("Square", *_UNARY),
    "SQRT": ("Square Root", *_UNARY),
    "QUANTIZE": ("Convert",),
    "DEQUANTIZE": ("Convert",),
}
HELPER_OPERATORS = ("Static Reshape", "Copy", "Convert", "Transpose")
# XNNPACK splits an op's fused activation into an operator after it (ADD + RELU: Add, Clamp).
FUSED_ACTIVATION_OPERATORS = ("Clamp",)
# Ops XNNPACK folds into the op after them (a PAD into the convolution it feeds): no operator.
FOLDED_INTO_NEXT = {"PAD": ("CONV_2D", "DEPTHWISE_CONV_2D")}


@dataclass(frozen=True)
class FileOp:
    """An op of the file's first subgraph, in execution order."""

    index: int
    kind: str
    outputs: tuple[str, ...]  # output tensor names
    # Every input is a constant (a DEQUANTIZE of float16 weights): runtimes compute it once
    # at load, so no run spends time on it.
    static: bool = False
    inputs: tuple[int, ...] = ()  # tensor indices (non-constant inputs only)
    output_ids: tuple[int, ...] = ()  # tensor indices


@dataclass(frozen=True)
class OpTime:
    """Profiled time that belongs to one op of the file, or to none (``op`` None)."""

    op: int | None
    label: str  # the op's kind, or what the profile called it (XNNPACK names)
    ms: float

    def to_dict(self) -> dict[str, Any]:
        """The time as plain values, to store.

        Returns:
            ``op``, ``label`` and ``ms``.
        """
        return {"op": self.op, "label": self.label, "ms": self.ms}


def file_ops(tflite: bytes) -> list[FileOp]:
    """The ops of the file's first subgraph, in execution order, for :func:`attribute`.

    Args:
        tflite: the TFLite file that was profiled.

    Returns:
        One :class:`FileOp` per op; its ``index`` is the op's node index in the file.
    """
    schema = _schema()
    model = schema.Model.GetRootAs(tflite, 0)
    graph = model.Subgraphs(0)
    names = _op_names(schema)
    ops = []
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        outs = op.OutputsAsNumpy().tolist() if op.OutputsLength() else []
        ins = [t for t in (op.InputsAsNumpy().tolist() if op.InputsLength() else []) if t >= 0]
        labels = tuple((graph.Tensors(t).Name() or b"").decode(errors="replace") for t in outs)
        static = bool(ins) and all(
            model.Buffers(graph.Tensors(t).Buffer()).DataLength() > 0 for t in ins
        )
        variable = tuple(
            t for t in ins if model.Buffers(graph.Tensors(t).Buffer()).DataLength() == 0
        )
        ops.append(FileOp(j, kind, labels, static, variable, tuple(outs)))
    return ops


def _operator(name: str) -> str:
    return name.split(" (")[0].strip()


def _implements(op_kind: str, operator: str) -> bool:
    return _operator(operator) in MAIN_OPERATORS.get(op_kind, ())


def attribute(profiled: list[dict[str, Any]], ops: list[FileOp]) -> list[OpTime]:
    """Each profiled op's time on an op of the file, or unmapped. ``profiled`` rows have
    ``source`` ("tflite"/"delegate"), ``kind``, ``index``, ``partition`` and ``ms``.

    Args:
        profiled: a device's op profile of the file, one row per profiled op.
        ops: :func:`file_ops` of the same file.

    Returns:
        One time per ``tflite`` or ``delegate`` row: on the file op it belongs to, or with
        ``op`` None (and the profile's name) where it cannot be told.
    """
    kept = {row["index"] for row in profiled if row["source"] == "tflite"}
    times = _runtime_op_times(profiled, ops)
    segments = _delegated_segments(ops, kept)
    partitions: dict[int, list[dict[str, Any]]] = {}
    for row in profiled:
        if row["source"] != "delegate":
            continue
        if row["partition"] is None:  # a profile that cannot tell partitions apart
            times.append(_unmapped(row))
        else:
            partitions.setdefault(int(row["partition"]), []).append(row)
    ordered = [partitions[k] for k in sorted(partitions)]
    if len(ordered) != len(segments):
        # The runtime delegated ops in some other grouping: say so rather than guess.
        for rows in ordered:
            times += [_unmapped(row) for row in rows]
        return times
    for rows, segment in zip(ordered, segments, strict=True):
        matched = _align(rows, segment)
        if matched is None:
            times += [_unmapped(row) for row in rows]
        else:
            times += [OpTime(op.index, op.kind, row["ms"]) for row, op in matched]
    return times


def _runtime_op_times(profiled: list[dict[str, Any]], ops: list[FileOp]) -> list[OpTime]:
    """The times of the ops the runtime ran itself, on the file op their node index names."""
    times: list[OpTime] = []
    for row in profiled:
        if row["source"] != "tflite":
            continue
        index = row["index"]
        if 0 <= index < len(ops) and ops[index].kind == row["kind"]:
            times.append(OpTime(index, ops[index].kind, row["ms"]))
        else:
            times.append(OpTime(None, f"{row['kind']} (node {index})", row["ms"]))
    return times


def _delegated_segments(ops: list[FileOp], kept: set[int]) -> list[list[FileOp]]:
    """The runs of consecutive delegated ops between the ops the runtime kept, in order."""
    segments: list[list[FileOp]] = []
    for op in ops:
        if op.index in kept or op.static:
            continue
        if segments and _adjacent(segments[-1][-1], op, ops):
            segments[-1].append(op)
        else:
            segments.append([op])
    return segments


def _adjacent(last: FileOp, op: FileOp, ops: list[FileOp]) -> bool:
    """No op the runtime kept runs between the two (static ops in between do not count)."""
    return all(ops[i].static for i in range(last.index + 1, op.index))


def _unmapped(row: dict[str, Any]) -> OpTime:
    return OpTime(None, f"XNNPACK {row['kind']}", row["ms"])


def _align(rows: list[dict[str, Any]], segment: list[FileOp]) -> list[tuple[Any, FileOp]] | None:
    """XNNPACK's operators of one partition against its ops, or None when they do not fit."""
    matched: list[tuple[Any, FileOp]] = []
    pending: list[dict[str, Any]] = []  # helpers, given to the next op that is matched
    j = 0
    for row in rows:
        kind = row["kind"]
        if (
            j + 1 < len(segment)
            and segment[j + 1].kind in FOLDED_INTO_NEXT.get(segment[j].kind, ())
            and not _implements(segment[j].kind, kind)
            and _implements(segment[j + 1].kind, kind)
        ):
            j += 1  # the folded op has no operator and no time of its own
        if j < len(segment) and _implements(segment[j].kind, kind):
            matched += [(r, segment[j]) for r in [*pending, row]]
            pending, j = [], j + 1
        elif (
            j > 0
            and not pending
            and (
                _implements(segment[j - 1].kind, kind)
                or _operator(kind) in FUSED_ACTIVATION_OPERATORS
            )
        ):
            matched.append((row, segment[j - 1]))  # another operator of the same op
        elif _operator(kind) in HELPER_OPERATORS:
            pending.append(row)
        else:
            return None
    if j != len(segment):
        return None
    matched += [(r, segment[-1]) for r in pending]  # trailing helpers: the last op's
    return matched

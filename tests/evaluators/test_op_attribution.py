"""Profiled ops onto the ops of the file: the rules, on small hand-made profiles. (The
same code on real LiteRT profiles of real files: tests/spaces/test_layer_times.py.)"""

from __future__ import annotations

from devicefit.evaluators.op_attribution import FileOp, attribute


def _ops(*kinds: str) -> list[FileOp]:
    return [FileOp(i, kind, (f"t{i}",)) for i, kind in enumerate(kinds)]


def _row(source: str, kind: str, index: int, ms: float, partition: int | None = None) -> dict:
    return {"source": source, "kind": kind, "index": index, "partition": partition, "ms": ms}


def test_kept_ops_by_node_index_and_partitions_in_order() -> None:
    ops = _ops("CONV_2D", "MAX_POOL_2D", "SHAPE", "RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED")
    rows = [
        _row("delegate", "Convolution (NHWC, F32) IGEMM", 0, 1.0, 0),
        _row("delegate", "Max Pooling (NHWC, F32)", 1, 0.1, 0),
        _row("tflite", "SHAPE", 2, 0.01),
        _row("tflite", "RESHAPE", 3, 0.02),
        # A Static Reshape XNNPACK adds before each Fully Connected belongs to it.
        _row("delegate", "Static Reshape (NC)", 0, 0.003, 1),
        _row("delegate", "Fully Connected (NC, F32) GEMM", 1, 2.0, 1),
        _row("delegate", "Static Reshape (NC)", 2, 0.004, 1),
        _row("delegate", "Fully Connected (NC, F32) GEMM", 3, 0.5, 1),
    ]
    times = attribute(rows, ops)
    per_op: dict[int | None, float] = {}
    for t in times:
        per_op[t.op] = per_op.get(t.op, 0.0) + t.ms
    assert per_op == {0: 1.0, 1: 0.1, 2: 0.01, 3: 0.02, 4: 2.003, 5: 0.504}


def test_a_partition_that_does_not_fit_is_unmapped_not_guessed() -> None:
    ops = _ops("CONV_2D", "ADD")
    rows = [
        _row("delegate", "Convolution (NHWC, F32) IGEMM", 0, 1.0, 0),
        _row("delegate", "Resize Bilinear (NHWC, F32)", 1, 0.5, 0),  # no ADD makes this
    ]
    times = attribute(rows, ops)
    assert [(t.op, t.label) for t in times] == [
        (None, "XNNPACK Convolution (NHWC, F32) IGEMM"),
        (None, "XNNPACK Resize Bilinear (NHWC, F32)"),
    ]


def test_more_partitions_than_runs_of_delegated_ops_is_unmapped() -> None:
    ops = _ops("CONV_2D", "CONV_2D")
    rows = [
        _row("delegate", "Convolution (NHWC, F32) IGEMM", 0, 1.0, 0),
        _row("delegate", "Convolution (NHWC, F32) IGEMM", 0, 1.0, 1),
    ]
    assert all(t.op is None for t in attribute(rows, ops))


def test_a_kept_op_whose_kind_differs_is_unmapped_with_its_node() -> None:
    times = attribute([_row("tflite", "SOFTMAX", 1, 0.2)], _ops("CONV_2D", "ADD"))
    assert [(t.op, t.label, t.ms) for t in times] == [(None, "SOFTMAX (node 1)", 0.2)]


def test_folded_pad_split_activation_and_copies_per_concatenated_input() -> None:
    ops = _ops("PAD", "CONV_2D", "ADD", "CONCATENATION", "CONV_2D")
    rows = [
        _row("delegate", "Convolution (NHWC, F32) IGEMM", 0, 1.0, 0),  # the PAD folded in
        _row("delegate", "Add (ND)", 1, 0.1, 0),
        _row("delegate", "Clamp (NC)", 2, 0.05, 0),  # ADD's fused ReLU
        _row("delegate", "Copy (NC, X32)", 3, 0.02, 0),
        _row("delegate", "Copy (NC, X32)", 4, 0.03, 0),
        _row("delegate", "Fully Connected (NC, F32) GEMM", 5, 0.4, 0),  # a 1x1 convolution
    ]
    times = attribute(rows, ops)
    assert [(t.op, t.ms) for t in times] == [
        (1, 1.0),
        (2, 0.1),
        (2, 0.05),
        (3, 0.02),
        (3, 0.03),
        (4, 0.4),
    ]


def test_static_ops_take_no_place_in_a_partition() -> None:
    ops = [
        FileOp(0, "DEQUANTIZE", ("w",), static=True),  # float16 weights, unpacked at load
        FileOp(1, "CONV_2D", ("c",)),
    ]
    times = attribute([_row("delegate", "Convolution (NHWC, F32) IGEMM", 0, 1.0, 0)], ops)
    assert [(t.op, t.ms) for t in times] == [(1, 1.0)]

"""The adb evaluator's reader of benchmark_model's per-op table, on tables as published
(see the README beside the files) and on the layout recent builds print."""

from __future__ import annotations

from pathlib import Path

import pytest

from devicefit.evaluators.benchmark_model_output import BenchmarkOutputError
from devicefit.evaluators.op_profile_output import parse_op_profile

OUTPUTS = Path(__file__).parent / "benchmark_model_outputs"


def test_old_build_with_a_start_column_and_no_node_index() -> None:
    text = (OUTPUTS / "op_profile_tf_readme_mobilenet_v1.txt").read_text()
    nodes = parse_op_profile(text)
    # The 31 rows of "Run Order", not the "Top by Computation Time" rows after them.
    assert len(nodes) == 31
    first, last = nodes[0], nodes[-1]
    assert (first.node_type, first.name, first.node_index) == (
        "CONV_2D",
        "MobilenetV1/MobilenetV1/Conv2d_0/Relu6",
        None,
    )
    assert first.first_ms == pytest.approx(4.269) and first.avg_ms == pytest.approx(4.269)
    assert (last.node_type, last.name) == ("SOFTMAX", "MobilenetV1/Predictions/Softmax")
    assert [n.node_type for n in nodes].count("CONV_2D") == 15
    assert [n.node_type for n in nodes].count("DEPTHWISE_CONV_2D") == 13
    # "times called" is 0 in this build: each node ran once per run. The per-run sum is the
    # table's own last [start] + [avg ms] (79.443 + 0.029), within the rounding of 31 rows.
    assert all(n.calls == 1 for n in nodes)
    assert sum(n.ms_per_run for n in nodes) == pytest.approx(79.472, abs=0.031)


def test_delegate_nodes_and_node_indices() -> None:
    nodes = parse_op_profile((OUTPUTS / "op_profile_deeplab_nnapi.txt").read_text())
    assert [n.node_type for n in nodes] == [
        "TfLiteNnapiDelegate",
        "AVERAGE_POOL_2D",
        "TfLiteNnapiDelegate",
        "RESIZE_BILINEAR",
        "TfLiteNnapiDelegate",
        "RESIZE_BILINEAR",
        "RESIZE_BILINEAR",
        "ARG_MAX",
    ]
    assert nodes[0].name == "MobilenetV2/expanded_conv_16/project/add_fold, aspp0/Relu"
    assert [n.node_index for n in nodes] == [71, 61, 72, 63, 73, 68, 69, 70]
    assert nodes[6].avg_ms == pytest.approx(22.369) and nodes[6].first_ms == pytest.approx(22.826)
    # [%] is each node's share of the sum of the rows: 42.965% for ResizeBilinear_2.
    total = sum(n.ms_per_run for n in nodes)
    assert nodes[6].ms_per_run / total == pytest.approx(0.42965, abs=5e-5)


# Not a published run: the layout of recent builds (see the README beside the files).
RECENT = (OUTPUTS / "op_profile_recent_layout.txt").read_text()


def test_recent_layout_skips_the_initialization_table() -> None:
    nodes = parse_op_profile(RECENT)
    assert [(n.node_type, n.name, n.node_index, n.calls) for n in nodes] == [
        ("QUANTIZE", "tfl.quantize", 0, 1),
        ("Convolution (NHWC, QC8) IGEMM", "Delegate/Convolution (NHWC, QC8) IGEMM", 0, 1),
        ("Convolution (NHWC, QC8) DWConv", "Delegate/Convolution (NHWC, QC8) DWConv", 1, 8),
    ]
    assert nodes[2].ms_per_run == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("count=50 first=1 curr=1 min=1 max=1 avg=1 std=0\n", "no 'Run Order' table"),
        (RECENT.replace("[node type]", "[kind]"), r"no '\[node type\]' header"),
        (RECENT.replace("0.400        40.000%", "fast        40.000%"), "cannot read this row"),
    ],
)
def test_unreadable_tables_are_refused_whole(text: str, says: str) -> None:
    with pytest.raises(BenchmarkOutputError, match=says):
        parse_op_profile(text)


def test_rows_for_attribution_number_the_partitions() -> None:
    from devicefit.evaluators.op_profile_output import profile_rows

    once = RECENT.replace(
        "100.000%             0.000                8", "100.000%             0.000                1"
    )
    rows = profile_rows(parse_op_profile(once))
    assert [(r["source"], r["index"], r["partition"], r["ms"]) for r in rows] == [
        ("tflite", 0, None, pytest.approx(0.203)),
        ("delegate", 0, 0, pytest.approx(0.4)),
        ("delegate", 1, 0, pytest.approx(0.05)),
    ]


def test_merged_delegate_rows_are_not_split_by_guess() -> None:
    """benchmark_model keys its statistics by name: ops of several partitions that share a
    name and position become one row "called" several times. Such rows cannot be told
    apart, so no partition is claimed for any delegate row."""
    from devicefit.evaluators.op_attribution import FileOp, attribute
    from devicefit.evaluators.op_profile_output import profile_rows

    rows = profile_rows(parse_op_profile(RECENT))  # its DWConv row: 8 calls per run
    assert rows[2]["ms"] == pytest.approx(0.4)
    assert all(r["partition"] is None for r in rows if r["source"] == "delegate")
    ops = [FileOp(0, "QUANTIZE", ("q",)), FileOp(1, "CONV_2D", ("c",))]
    times = attribute(rows, ops)
    assert [(t.op, t.label) for t in times] == [
        (0, "QUANTIZE"),
        (None, "XNNPACK Convolution (NHWC, QC8) IGEMM"),
        (None, "XNNPACK Convolution (NHWC, QC8) DWConv"),
    ]

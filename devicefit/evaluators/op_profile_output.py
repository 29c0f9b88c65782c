"""Read the per-op table ``benchmark_model --enable_op_profiling=true`` prints.

The table sits under "Operator-wise Profiling Info for Regular Benchmark Runs:" (older
builds print the table alone), in a "Run Order" section, one row per node:

    [node type]  [start]  [first]  [avg ms]  [%]  [cdf%]  [mem KB]  [times called]  [Name]

``[start]`` is missing in recent builds; columns are tab- or space-separated; node types
may hold spaces (XNNPACK's "Convolution (NHWC, F32) IGEMM"); names are "[tensor name]",
"[tensor name]:node index" or "Delegate/<xnnpack op>:node index". ``[avg ms]`` is per call
and ``[times called]`` the calls per run (0 in old builds, which call each node once), so a
node's share of one run is their product. The "Profiling Info for Benchmark
Initialization" table (ModifyGraphWithDelegate, AllocateTensors) is not the run's and is
skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from devicefit.evaluators.benchmark_model_output import BenchmarkOutputError

_RUNS_HEADER = "Operator-wise Profiling Info for Regular Benchmark Runs"
_RUN_ORDER = re.compile(r"=+\s*Run Order\s*=+")
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_NAME = re.compile(
    r"^\[(?P<inner>.*)\](?::(?P<index>\d+))?$|^(?P<bare>.*?)(?::(?P<bare_index>\d+))?$"
)
_PREFIX = re.compile(r"^(?:INFO:\s*)")


@dataclass(frozen=True)
class ProfiledNode:
    """One row of the run-order table."""

    node_type: str  # CONV_2D, TfLiteXNNPackDelegate, "Convolution (NHWC, F32) IGEMM", ...
    name: str  # the op's output tensor name(s), or "Delegate/<op>" inside a delegate
    node_index: int | None  # the ":N" suffix (None in builds that print none)
    first_ms: float
    avg_ms: float  # per call
    calls: int  # per run

    @property
    def ms_per_run(self) -> float:
        return self.avg_ms * self.calls


def parse_op_profile(text: str) -> list[ProfiledNode]:
    """The rows of the regular runs' run-order table, in run order.

    Raises BenchmarkOutputError when the text holds no such table or a row of it cannot be
    read (the row is quoted), rather than returning a partial profile.
    """
    lines = [_PREFIX.sub("", line.rstrip("\n")) for line in text.splitlines()]
    header_at = _header_line(lines)
    has_start = "[start]" in lines[header_at]
    row = _row_pattern(has_start)
    nodes = []
    for line in lines[header_at + 1 :]:
        if not line.strip() or line.lstrip().startswith("="):
            break
        nodes.append(_node(row, line, has_start))
    if not nodes:
        raise BenchmarkOutputError("the 'Run Order' table of the op profile has no rows")
    return nodes


def _header_line(lines: list[str]) -> int:
    """The index of the regular runs' run-order table's "[node type]" header line."""
    start = next((i for i, line in enumerate(lines) if _RUNS_HEADER in line), None)
    sections = [i for i, line in enumerate(lines) if _RUN_ORDER.search(line)]
    if start is not None:
        sections = [i for i in sections if i > start][:1]
    else:
        # Older builds print the table without its title; the initialization table, if
        # present, comes first.
        sections = sections[-1:]
    if not sections:
        raise BenchmarkOutputError("no 'Run Order' table of --enable_op_profiling output")
    header_at = sections[0] + 1
    if header_at >= len(lines) or "[node type]" not in lines[header_at]:
        raise BenchmarkOutputError("the 'Run Order' table has no '[node type]' header line")
    return header_at


def _row_pattern(has_start: bool) -> re.Pattern[str]:
    """A row of the table: its node type, its numbers (one more with ``[start]``), its name."""
    numbers = 7 if has_start else 6
    return re.compile(
        rf"^\s*(?P<type>\S.*?)\s+(?P<numbers>(?:{_NUMBER}%?\s+){{{numbers}}})(?P<name>\S.*?)\s*$"
    )


def _node(row: re.Pattern[str], line: str, has_start: bool) -> ProfiledNode:
    """One row of the table as a node; BenchmarkOutputError, quoting it, if it cannot be read."""
    match = row.match(line)
    if match is None:
        raise BenchmarkOutputError(f"cannot read this row of the op profile: {line.strip()!r}")
    values = [float(v.rstrip("%")) for v in match["numbers"].split()]
    if has_start:
        values = values[1:]
    first, avg, _share, _cdf, _mem_kb, calls = values
    name = _NAME.match(match["name"])
    assert name is not None  # the second alternative matches any text
    index = name["index"] if name["inner"] is not None else name["bare_index"]
    return ProfiledNode(
        node_type=match["type"].strip(),
        name=name["inner"] if name["inner"] is not None else name["bare"],
        node_index=int(index) if index is not None else None,
        first_ms=first,
        avg_ms=avg,
        calls=max(int(calls), 1),
    )


def profile_rows(nodes: list[ProfiledNode]) -> list[dict[str, Any]]:
    """The table's rows in the form LiteRT's own profile takes (deploy/op_profiler.py), for
    ``op_attribution.attribute``. benchmark_model keys its statistics by name, so the ops
    of different XNNPACK partitions that share a name and position are one row called
    several times per run: then no delegate row can be told apart and all are marked
    ``partition`` None (unmapped, named), rather than split by guess."""
    merged = any(n.calls > 1 and n.name.startswith("Delegate/") for n in nodes)
    rows, partition, last = [], -1, None
    for node in nodes:
        delegate = node.name.startswith("Delegate/")
        index = node.node_index if node.node_index is not None else -1
        if delegate and not merged:
            if last is None or index <= last:
                partition += 1
            last = index
        elif not delegate:
            last = None
        rows.append(
            {
                "source": "delegate" if delegate else "tflite",
                "kind": node.node_type,
                "index": index,
                "partition": partition if delegate and not merged else None,
                "ms": node.ms_per_run,
            }
        )
    return rows

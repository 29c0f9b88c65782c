"""``devicefit inspect``: what the search can touch in a model, layer by layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import Technique, weighted_layers
from devicefit.spaces.blocks import block_of, find_blocks
from devicefit.spaces.graph import dependency_graph
from devicefit.spaces.layer_times import LayerTimes
from devicefit.spaces.macs import layer_macs, layer_shapes
from devicefit.spaces.rebuild import as_functional

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()


@dataclass
class LayerReport:
    name: str
    kind: str
    output_shape: tuple[int | None, ...]
    macs: int
    params: int
    group: str  # the channel group of its output, "frozen: why" or ""
    block: str  # the per-block granularity unit it belongs to
    applies: dict[str, str] = field(default_factory=dict)  # technique -> what it would do
    not_applicable: dict[str, str] = field(default_factory=dict)  # technique -> why not
    # device -> this layer's measured time per run (ms) and its share of the profiled time
    time_ms: dict[str, float] = field(default_factory=dict)
    time_share: dict[str, float] = field(default_factory=dict)
    # technique -> level (identity, mild, medium, strong) -> metric drop without fine-tuning
    # (None where the setting failed on this layer)
    sensitivity: dict[str, dict[str, float | None]] = field(default_factory=dict)


def inspect_model(
    model: keras.Model, input_shape: tuple[int, ...], techniques: list[Technique]
) -> list[LayerReport]:
    """One report per layer that holds weights or costs MACs, in graph order.

    Args:
        model: the model to inspect; left untouched.
        input_shape: the shipped input shape, batch 1 included (MACs at unknown sizes).
        techniques: the techniques whose ``explain`` fills each row's verdicts.

    Returns:
        The rows: MACs, parameters, channel group, block and what each technique would do;
        times and sensitivity are added by ``add_device_times`` and ``add_sensitivity``.
    """
    functional = as_functional(model)
    shapes = layer_shapes(functional, input_shape)
    graph = dependency_graph(functional)
    blocks = block_of(find_blocks(graph.view))
    verdicts = {t.name: t.explain(functional) for t in techniques}
    weighted = {layer.name for layer in weighted_layers(functional)}
    reports = []
    for name in graph.view.order:
        layer = graph.view.layers[name]
        in_shape, out_shape = shapes.get(name, graph.view.shapes[name])
        macs = layer_macs(layer, in_shape, out_shape) if name in shapes else 0
        if name not in weighted and not macs:
            continue
        group = graph.group_of(name)
        label = ""
        if group is not None and group.layers("out"):
            label = group.name if not group.frozen else f"{group.name} (frozen: {group.frozen[0]})"
        report = LayerReport(
            name,
            type(layer).__name__,
            tuple(out_shape),
            macs,
            int(sum(int(w.numpy().size) for w in getattr(layer, "weights", []))),
            label,
            blocks.get(name, ""),
        )
        for technique, verdict in verdicts.items():
            if name in verdict:
                ok, text = verdict[name]
                (report.applies if ok else report.not_applicable)[technique] = text
        reports.append(report)
    return reports


def add_device_times(reports: list[LayerReport], device: str, times: LayerTimes) -> None:
    """Each layer's measured time on ``device``; ops no layer explains become rows of kind
    "unmapped op" (the converter's QUANTIZE at the input, say), so the rows hold all of it.

    Args:
        reports: ``inspect_model``'s rows; changed in place, new rows appended.
        device: the device's name, the key of the new times.
        times: the device profile's times (``device_profile``).
    """
    total = times.total_ms or 1.0
    by_name = {r.name: r for r in reports}
    for name, ms in times.layers.items():
        if name not in by_name:  # a layer with time but no MACs or weights (a Flatten)
            by_name[name] = LayerReport(name, "(no weights)", (), 0, 0, "", "")
            reports.append(by_name[name])
        by_name[name].time_ms[device] = ms
        by_name[name].time_share[device] = ms / total
    for label, ms in times.unmapped.items():
        row = by_name.get(label)
        if row is None:
            row = by_name[label] = LayerReport(label, "unmapped op", (), 0, 0, "", "")
            reports.append(row)
        row.time_ms[device] = ms
        row.time_share[device] = ms / total


def add_sensitivity(reports: list[LayerReport], points: list[Any]) -> None:
    """Per-layer sensitivity points (spaces/sensitivity.py) onto the layers' rows.

    Args:
        reports: the rows; changed in place.
        points: the profile's points; those whose unit is no row's layer (a block) are ignored.
    """
    by_name = {r.name: r for r in reports}
    for point in points:
        row = by_name.get(point.unit)
        if row is not None:
            row.sensitivity.setdefault(point.technique, {})[point.level] = point.drop


def print_sensitivity(reports: list[LayerReport], metric: str, console: Any) -> None:
    """Print each layer's metric drop without fine-tuning, per technique and level.

    Args:
        reports: the rows, their ``sensitivity`` filled by ``add_sensitivity``.
        metric: the metric's name, for the title.
        console: the rich Console to print to.
    """
    from rich.table import Table

    from devicefit.spaces.sensitivity import LEVEL_NAMES

    table = Table(title=f"Sensitivity: {metric} lost without fine-tuning, one layer at a time")
    for column in ("layer", "technique", *LEVEL_NAMES):
        table.add_column(column, justify="left" if column in ("layer", "technique") else "right")
    for r in reports:
        for technique, drops in sorted(r.sensitivity.items()):
            cells = [  # a level the technique does not have (depth pruning's mild): blank
                "" if level not in drops else "failed" if drops[level] is None
                else f"{drops[level]:+.2f}"
                for level in LEVEL_NAMES
            ]  # fmt: skip
            table.add_row(r.name, technique, *cells)
    console.print(table)


def print_inspection(reports: list[LayerReport], console: Any) -> None:
    """Print the ``devicefit inspect`` table, one row per layer, and a line of totals.

    Args:
        reports: the rows.
        console: the rich Console to print to.
    """
    from rich.table import Table

    total_macs = sum(r.macs for r in reports) or 1
    devices = sorted({d for r in reports for d in r.time_ms})
    table = Table(title="What the search can touch", show_lines=False)
    columns = ["layer", "type", "block", "MACs"]
    columns += [f"time on {d}" for d in devices]
    columns += ["params", "channel group", "techniques", "not, because"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for r in reports:
        share = f"{r.macs:,} ({r.macs / total_macs:.0%})" if r.macs else "0"
        times = [
            f"{r.time_ms[d]:.3f} ms ({r.time_share[d]:.0%})" if d in r.time_ms else ""
            for d in devices
        ]
        table.add_row(
            r.name,
            r.kind,
            r.block,
            share,
            *times,
            f"{r.params:,}",
            r.group,
            ", ".join(sorted(r.applies)),
            "; ".join(f"{t}: {why}" for t, why in sorted(r.not_applicable.items())),
        )
    console.print(table)
    console.print(
        f"{len(reports)} layers, {sum(r.macs for r in reports):,} MACs, "
        f"{sum(r.params for r in reports):,} parameters"
    )

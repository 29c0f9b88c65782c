"""``devicefit inspect``: what the search can touch in a model, layer by layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import Technique, weighted_layers
from devicefit.spaces.blocks import block_of, find_blocks
from devicefit.spaces.graph import dependency_graph
from devicefit.spaces.macs import layer_macs, layer_shapes
from devicefit.spaces.rebuild import as_functional

silence_tensorflow()

import keras  # noqa: E402


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


def inspect_model(
    model: keras.Model, input_shape: tuple[int, ...], techniques: list[Technique]
) -> list[LayerReport]:
    """One report per layer that holds weights or costs MACs, in graph order."""
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


def print_inspection(reports: list[LayerReport], console: Any) -> None:
    from rich.table import Table

    total_macs = sum(r.macs for r in reports) or 1
    table = Table(title="What the search can touch", show_lines=False)
    for column in (
        "layer",
        "type",
        "MACs",
        "params",
        "channel group",
        "techniques",
        "not, because",
    ):
        table.add_column(column, overflow="fold")
    for r in reports:
        share = f"{r.macs:,} ({r.macs / total_macs:.0%})" if r.macs else "0"
        table.add_row(
            r.name,
            r.kind,
            r.block,
            share,
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

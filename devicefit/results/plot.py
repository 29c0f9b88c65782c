"""The interactive Pareto scatter: task metric against measured latency, one panel per device."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from devicefit.results.pareto import compare, float32_baseline, status
from devicefit.results.records import Objective, StudyRecord, TrialRecord
from devicefit.results.table import fmt_signed

if TYPE_CHECKING:
    import plotly.graph_objects as go

# Category -> marker. Dominated points recede (grey) so the front reads at a glance;
# infeasible ones get a cross because colour alone fails colour-blind readers.
STYLES: dict[str, dict[str, object]] = {
    "front": {"color": "#1f77b4", "size": 11, "symbol": "circle"},
    "dominated": {"color": "#bbbbbb", "size": 7, "symbol": "circle"},
    "infeasible": {"color": "#e377c2", "size": 7, "symbol": "x"},
}
BASELINE_SYMBOLS = {"float32": "star", "float16": "diamond", "int8": "square"}
BASELINE_COLOR = "#ff7f0e"


def build_figure(record: StudyRecord, front: Sequence[TrialRecord]) -> go.Figure:
    """One marker per completed trial per device; baselines get their own symbol and label."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    objs = record.latency_objectives
    devices = [o.device or o.name for o in objs]
    fig = make_subplots(
        rows=1, cols=max(1, len(objs)), shared_yaxes=True, subplot_titles=devices or None
    )
    front_numbers = {t.number for t in front}
    plotted = [t for t in record.trials if t.complete]
    groups: dict[str, list[TrialRecord]] = {}
    for t in plotted:
        key = f"baseline {t.baseline}" if t.baseline else status(record, t, front_numbers)
        groups.setdefault(key, []).append(t)
    baselines = sorted(k for k in groups if k.startswith("baseline "))
    order = ["dominated", "infeasible", "front", *baselines]

    unit = f" {record.metric.unit}" if record.metric.unit else ""
    hover = (
        "<b>trial #%{customdata[0]}</b> (%{customdata[1]})<br>%{customdata[2]}<br>"
        f"{html.escape(record.metric.name)}: %{{y:.4g}}{unit} (%{{customdata[3]}})<br>"
        "latency: %{x:.3g} ms<extra></extra>"
    )
    for col, obj in enumerate(objs, start=1):
        for key in order:
            members = [t for t in groups.get(key, []) if _xy(record, t, obj) is not None]
            if key == "front" and len(record.objectives) == 2:
                members.sort(key=lambda t: _xy(record, t, obj) or (0.0, 0.0))
            if not members:
                continue
            xs, ys = zip(*(_xy(record, t, obj) for t in members), strict=True)
            fig.add_trace(
                go.Scatter(
                    x=list(xs),
                    y=list(ys),
                    name=key,
                    legendgroup=key,
                    showlegend=col == 1,
                    customdata=[_custom(record, t, front_numbers) for t in members],
                    hovertemplate=hover,
                    **_style(key, len(record.objectives) == 2),
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="latency ms (median)", row=1, col=col)
    fig.update_yaxes(title_text=html.escape(record.metric.label()), row=1, col=1)
    _budget_line(fig, record)
    fig.update_layout(
        title=f"{html.escape(record.name)}: {html.escape(record.metric.name)} vs latency",
        template="plotly_white",
        height=520,
        legend={"orientation": "h", "y": -0.18},
    )
    return fig


def _xy(record: StudyRecord, t: TrialRecord, obj: Objective) -> tuple[float, float] | None:
    metric = t.metric(record.objectives)
    latency = t.latency_median(obj)
    return None if metric is None or latency is None else (latency, metric)


def _custom(record: StudyRecord, t: TrialRecord, front_numbers: set[int]) -> list[object]:
    change = compare(record, t).metric_change
    return [
        t.number,
        status(record, t, front_numbers),
        html.escape(t.plan_short or "original"),
        f"{fmt_signed(change)} vs float32" if change is not None else "change n/a",
    ]


def _style(key: str, two_objectives: bool) -> dict[str, object]:
    if key.startswith("baseline "):
        kind = key.split(" ", 1)[1]
        marker = {"color": BASELINE_COLOR, "size": 14, "line": {"width": 1, "color": "#333"}}
        marker["symbol"] = BASELINE_SYMBOLS.get(kind, "triangle-up")
        # The label says which reference it is without hovering.
        return {
            "mode": "markers+text",
            "marker": marker,
            "text": kind,
            "textposition": "top center",
        }
    style = dict(STYLES[key])
    if key == "front" and two_objectives:
        # With one device the 2-D projection is the whole front: draw its staircase.
        return {"mode": "lines+markers", "marker": style, "line": {"shape": "hv", "width": 1}}
    return {"mode": "markers", "marker": style}


def _budget_line(fig: go.Figure, record: StudyRecord) -> None:
    """The lowest metric a feasible trial may have, so infeasible points explain themselves."""
    base = float32_baseline(record)
    ref = record.reference_metric
    if ref is None and base is not None:
        ref = base.metric(record.objectives)
    if ref is None or record.max_metric_drop is None or not record.latency_objectives:
        return
    drop = record.max_metric_drop
    y = ref - drop if record.metric.higher_is_better else ref + drop
    fig.add_hline(
        y=y,
        line_dash="dot",
        line_color="#999",
        annotation_text="metric budget",
        row="all",
        col="all",
    )

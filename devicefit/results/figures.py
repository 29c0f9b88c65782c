"""The report's interactive plots (plotly): the front, hypervolume over time, techniques used
on the front, and parameter importances.

Every completed trial is one marker in each front panel; what it is (front, dominated,
infeasible, a baseline, a one-technique recipe) decides its look, so the front reads at a
glance and the references are never mistaken for search results.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from devicefit.results.hypervolume import HypervolumeStep, metric_edge
from devicefit.results.pareto import compare, status
from devicefit.results.records import Objective, StudyRecord, TrialRecord
from devicefit.results.table import fmt_signed

if TYPE_CHECKING:
    import plotly.graph_objects as go

# Dominated and infeasible points recede (grey); infeasible ones get a cross because colour
# alone fails colour-blind readers.
STYLES: dict[str, dict[str, object]] = {
    "front": {"color": "#1f77b4", "size": 11, "symbol": "circle"},
    "dominated": {"color": "#bbbbbb", "size": 7, "symbol": "circle"},
    "infeasible": {"color": "#cccccc", "size": 7, "symbol": "x"},
}
BASELINE_SYMBOLS = {"float32": "star", "float16": "diamond", "int8": "square"}
BASELINE_COLOR = "#ff7f0e"
RECIPE_COLOR = "#2ca02c"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def category(trial: TrialRecord, front_numbers: set[int], record: StudyRecord) -> str:
    """The legend group of a completed trial."""
    if trial.baseline:
        return f"baseline {trial.baseline}"
    if trial.recipe:
        return f"recipe {trial.recipe}"
    return status(record, trial, front_numbers)


def axis_label(obj: Objective) -> str:
    unit = f" ({obj.unit})" if obj.unit else ""
    return html.escape(f"{obj.name}{unit}")


def panels(record: StudyRecord) -> list[tuple[int, int, int, int]]:
    """(row, col, x objective index, y objective index) of each front panel.

    Two objectives: one panel. More: the upper triangle of a scatter-plot matrix, every
    pair once, the task metric on the top row.
    """
    k = len(record.objectives)
    if k == 2:
        return [(1, 1, 1, 0)]
    return [(y + 1, x, x, y) for y in range(k - 1) for x in range(y + 1, k)]


def front_figure(record: StudyRecord, front: Sequence[TrialRecord]) -> go.Figure:
    from plotly.subplots import make_subplots

    k = len(record.objectives)
    size = max(1, k - 1)
    fig = make_subplots(rows=size, cols=size, horizontal_spacing=0.06, vertical_spacing=0.08)
    front_numbers = {t.number for t in front}
    groups = _legend_groups(record, front_numbers)
    for index, (row, col, xi, yi) in enumerate(panels(record)):
        xo, yo = record.objectives[xi], record.objectives[yi]
        for key, group in groups.items():
            members = [t for t in group if xo.name in t.values and yo.name in t.values]
            if members:
                trace = _group_trace(record, key, members, (xo, yo), front_numbers, index == 0)
                fig.add_trace(trace, row=row, col=col)
        fig.update_xaxes(title_text=axis_label(xo), row=row, col=col)
        fig.update_yaxes(title_text=axis_label(yo), row=row, col=col)
        if yi == 0:
            _metric_axis(fig, record, row, col)
    if k == 2:
        _staircase(fig, record, front)
    fig.update_layout(
        template="plotly_white",
        height=max(460, 330 * size),
        legend={"orientation": "h", "y": -0.12 if size == 1 else -0.04},
        margin={"t": 30},
    )
    return fig


def _legend_groups(record: StudyRecord, front_numbers: set[int]) -> dict[str, list[TrialRecord]]:
    """The completed trials by legend group, in drawing order: dominated, infeasible and front
    first, then the recipes and the baselines (drawn last, on top)."""
    groups: dict[str, list[TrialRecord]] = {}
    for t in record.trials:
        if t.complete and t.same_as is None:  # one point per file: its first trial
            groups.setdefault(category(t, front_numbers, record), []).append(t)
    order = ["dominated", "infeasible", "front"]
    order += sorted(g for g in groups if g.startswith("recipe "))
    order += sorted(g for g in groups if g.startswith("baseline "))
    return {key: groups[key] for key in order if key in groups}


_FRONT_HOVER = (
    "<b>trial #%{customdata[0]}</b> (%{customdata[1]})<br>%{customdata[2]}<br>"
    "%{customdata[3]}<br>x: %{x:.4g}, y: %{y:.4g}<br><i>click for details</i><extra></extra>"
)


def _group_trace(
    record: StudyRecord,
    key: str,
    members: list[TrialRecord],
    axes: tuple[Objective, Objective],
    front_numbers: set[int],
    showlegend: bool,
) -> go.Scatter:
    """One legend group's points in one front panel (x and y objectives ``axes``)."""
    import plotly.graph_objects as go

    xo, yo = axes
    return go.Scatter(
        x=[t.values[xo.name] for t in members],
        y=[t.values[yo.name] for t in members],
        error_x=_spread(record, members, xo),
        error_y=_spread(record, members, yo),
        name=key,
        legendgroup=key,
        showlegend=showlegend,
        customdata=[_custom(record, t, front_numbers) for t in members],
        hovertemplate=_FRONT_HOVER,
        **_style(key, [status(record, t, front_numbers) for t in members]),
    )


def _metric_axis(fig: go.Figure, record: StudyRecord, row: int, col: int) -> None:
    """Mark the budget's edge and keep the axis on the region that matters.

    One collapsed candidate (accuracy 10%) would otherwise squash every useful point into
    a line; it stays in the plot, off the initial range (a double-click shows all).
    """
    edge = metric_edge(record)
    if edge is None or record.max_metric_drop is None:
        return
    fig.add_hline(
        y=edge, line_dash="dot", line_color="#999", annotation_text="budget", row=row, col=col
    )
    measured = [t.metric(record.objectives) for t in record.trials if t.complete]
    values = [v for v in measured if v is not None]
    if not values:
        return
    margin = 3 * (record.max_metric_drop or abs(edge) * 0.01 or 1.0)
    up = record.metric.higher_is_better
    low, high = (edge - margin, max(values)) if up else (min(values), edge + margin)
    if all(low <= v <= high for v in values):
        return
    pad = 0.05 * (high - low)
    fig.update_yaxes(range=[low - pad, high + pad], row=row, col=col)
    hidden = sum(not low <= v <= high for v in values)
    fig.add_annotation(
        text=f"{hidden} trial(s) far off the budget are below the axis; double-click to see all",
        xref="paper",
        yref="paper",
        x=0,
        y=1.02,
        showarrow=False,
        font={"size": 11, "color": "#666"},
    )


def _spread(record: StudyRecord, members: list[TrialRecord], obj: Objective) -> dict[str, Any]:
    """Latency error bars: from the fastest run to the 90th percentile around the median."""
    if obj.kind != "latency" or obj.device is None:
        return {"visible": False}
    plus, minus = [], []
    for t in members:
        lat = t.latency(obj.device)
        median = t.values.get(obj.name)
        p90, low = lat.get("p90_ms"), lat.get("min_ms")
        plus.append(max(0.0, p90 - median) if p90 is not None and median is not None else 0.0)
        minus.append(max(0.0, median - low) if low is not None and median is not None else 0.0)
    return {
        "type": "data",
        "symmetric": False,
        "array": plus,
        "arrayminus": minus,
        "thickness": 1,
        "width": 2,
        "color": "#999",
    }


def _custom(record: StudyRecord, t: TrialRecord, front_numbers: set[int]) -> list[object]:
    change = compare(record, t).metric_change
    return [
        t.number,
        status(record, t, front_numbers),
        html.escape(t.plan_short or "original"),
        f"{record.metric.name} {fmt_signed(change)} vs float32"
        if change is not None
        else "change n/a",
    ]


def _style(key: str, statuses: list[str]) -> dict[str, object]:
    if key.startswith(("baseline ", "recipe ")):
        kind, label = key.split(" ", 1)
        colour = BASELINE_COLOR if kind == "baseline" else RECIPE_COLOR
        symbol = BASELINE_SYMBOLS.get(label, "hexagon") if kind == "baseline" else "triangle-up"
        # Its own symbol and label always; its colour only while it is on the front, so a
        # dominated or infeasible reference recedes like any other trial.
        marker = {
            "size": 13,
            "line": {"width": 1, "color": "#333"},
            "symbol": symbol,
            "color": [
                colour if st == "front" else STYLES.get(st, STYLES["dominated"])["color"]
                for st in statuses
            ],
        }
        return {
            "mode": "markers+text",
            "marker": marker,
            "text": label,
            "textposition": "top center",
        }
    return {"mode": "markers", "marker": dict(STYLES[key])}


def _staircase(fig: go.Figure, record: StudyRecord, front: Sequence[TrialRecord]) -> None:
    """With two objectives the panel is the whole front: join every member (baselines and
    recipes on it included) into its staircase. A shape, not a trace: it adds no points."""
    xo, yo = record.objectives[1], record.objectives[0]
    members = sorted(front, key=lambda t: (t.values[xo.name], t.values[yo.name]))
    if len(members) < 2:
        return
    path = f"M {members[0].values[xo.name]},{members[0].values[yo.name]}"
    for t in members[1:]:
        path += f" H {t.values[xo.name]} V {t.values[yo.name]}"
    fig.add_shape(
        type="path", path=path, line={"color": STYLES["front"]["color"], "width": 1}, layer="below"
    )


def hypervolume_figure(
    history: Sequence[HypervolumeStep],
    series: Mapping[str, Sequence[HypervolumeStep]] | None = None,
) -> go.Figure:
    """Hypervolume against completed trials and against time; one line per study."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    lines = series if series is not None else {"hypervolume": history}
    fig = make_subplots(rows=1, cols=2, subplot_titles=["by completed trials", "by time"])
    for i, (name, steps) in enumerate(lines.items()):
        colour = PALETTE[i % len(PALETTE)]
        common = {"name": name, "legendgroup": name, "line": {"shape": "hv", "color": colour}}
        fig.add_trace(
            go.Scatter(
                x=[s.completed for s in steps],
                y=[s.hypervolume for s in steps],
                customdata=[s.trial for s in steps],
                hovertemplate="after trial #%{customdata}: %{y:.4g}<extra></extra>",
                mode="lines+markers",
                **common,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=[s.elapsed_s / 60.0 for s in steps],
                y=[s.hypervolume for s in steps],
                mode="lines+markers",
                showlegend=False,
                hovertemplate="%{x:.1f} min: %{y:.4g}<extra></extra>",
                **common,
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="completed trials", row=1, col=1)
    fig.update_xaxes(title_text="minutes since the first trial started", row=1, col=2)
    fig.update_yaxes(title_text="hypervolume", row=1, col=1)
    fig.update_layout(
        template="plotly_white", height=360, showlegend=series is not None, margin={"t": 40}
    )
    return fig


def technique_counts(trials: Sequence[TrialRecord]) -> Counter[str]:
    """How many of ``trials`` use each technique (a technique twice in one plan counts once)."""
    counts: Counter[str] = Counter()
    for t in trials:
        counts.update({s["technique"] for s in (t.plan or {}).get("steps", [])})
    return counts


def techniques_figure(record: StudyRecord, front: Sequence[TrialRecord]) -> go.Figure:
    """Share of front members and of all completed trials using each technique."""
    import plotly.graph_objects as go

    done = [t for t in record.trials if t.complete]
    on_front, overall = technique_counts(front), technique_counts(done)
    names = sorted(overall, key=lambda n: (-on_front[n], -overall[n], n))
    fig = go.Figure()
    for label, counts, total, colour in (
        ("front members", on_front, len(front), PALETTE[0]),
        ("all completed trials", overall, len(done), "#bbbbbb"),
    ):
        fig.add_trace(
            go.Bar(
                x=names,
                y=[100.0 * counts[n] / total if total else 0.0 for n in names],
                customdata=[counts[n] for n in names],
                name=label,
                marker_color=colour,
                hovertemplate="%{x}: %{customdata} trials (%{y:.0f}%)<extra>" + label + "</extra>",
            )
        )
    fig.update_layout(
        template="plotly_white",
        barmode="group",
        height=340,
        yaxis_title="% of trials using it",
        margin={"t": 20},
    )
    return fig


def importance_figure(by_objective: dict[str, dict[str, float]]) -> go.Figure:
    """One bar group per parameter, one colour per objective."""
    import plotly.graph_objects as go

    params = sorted({p for imp in by_objective.values() for p in imp})
    fig = go.Figure()
    for i, (objective, imp) in enumerate(by_objective.items()):
        fig.add_trace(
            go.Bar(
                y=params,
                x=[imp.get(p, 0.0) for p in params],
                orientation="h",
                name=objective,
                marker_color=PALETTE[i % len(PALETTE)],
                hovertemplate="%{y}: %{x:.2f}<extra>" + html.escape(objective) + "</extra>",
            )
        )
    fig.update_layout(
        template="plotly_white",
        barmode="group",
        height=max(300, 60 + 24 * len(params) * max(1, len(by_objective)) // 2),
        xaxis_title="importance (PED-ANOVA, normalised per objective)",
        margin={"t": 20, "l": 10},
        yaxis={"automargin": True},
    )
    return fig


def compare_figure(
    records: Sequence[StudyRecord],
    fronts: Sequence[Sequence[TrialRecord]],
    labels: Sequence[str],
    perms: Sequence[Sequence[int]],
) -> go.Figure:
    """The fronts of several studies in one panel per objective pair, one colour per study.

    ``perms[s][i]``: study s's index of the first study's objective i (see align_objectives).
    """
    from plotly.subplots import make_subplots

    first = records[0]
    k = len(first.objectives)
    size = max(1, k - 1)
    fig = make_subplots(rows=size, cols=size, horizontal_spacing=0.06, vertical_spacing=0.08)
    for index, (row, col, xi, yi) in enumerate(panels(first)):
        studies = zip(records, fronts, labels, perms, strict=True)
        for s, (record, front, label, perm) in enumerate(studies):
            axes = (record.objectives[perm[xi]], record.objectives[perm[yi]])
            colour = PALETTE[s % len(PALETTE)]
            trace = _study_trace(front, label, axes, colour, k == 2, index == 0)
            fig.add_trace(trace, row=row, col=col)
        # Device names may differ between compared studies; then the axis says the kind.
        fig.update_xaxes(title_text=_shared_label(records, perms, xi), row=row, col=col)
        fig.update_yaxes(title_text=_shared_label(records, perms, yi), row=row, col=col)
    fig.update_layout(
        template="plotly_white",
        height=max(460, 330 * size),
        legend={"orientation": "h", "y": -0.12},
        margin={"t": 30},
    )
    return fig


def _study_trace(
    front: Sequence[TrialRecord],
    label: str,
    axes: tuple[Objective, Objective],
    colour: str,
    joined: bool,
    showlegend: bool,
) -> go.Scatter:
    """One study's front in one panel (x and y objectives ``axes``), a staircase if ``joined``."""
    import plotly.graph_objects as go

    xo, yo = axes
    members = sorted(front, key=lambda t: t.values[xo.name])
    return go.Scatter(
        x=[t.values[xo.name] for t in members],
        y=[t.values[yo.name] for t in members],
        name=label,
        legendgroup=label,
        showlegend=showlegend,
        mode="lines+markers" if joined else "markers",
        line={"shape": "hv", "color": colour, "width": 1},
        marker={"color": colour, "size": 10},
        customdata=[[t.number, html.escape(t.plan_short or "original")] for t in members],
        hovertemplate=html.escape(label) + " #%{customdata[0]}<br>%{customdata[1]}<extra></extra>",
    )


def _shared_label(
    records: Sequence[StudyRecord], perms: Sequence[Sequence[int]], index: int
) -> str:
    obj = records[0].objectives[index]
    names = {r.objectives[p[index]].name for r, p in zip(records, perms, strict=True)}
    return axis_label(obj) if len(names) == 1 else _kind_label(obj)


def _kind_label(obj: Objective) -> str:
    if obj.device is None:
        return axis_label(obj)
    unit = f" ({obj.unit})" if obj.unit else ""
    return html.escape(f"{obj.kind}{unit}")

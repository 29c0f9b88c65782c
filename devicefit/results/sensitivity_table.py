"""The report's "What each unit tolerates": the metric each unit gives up to each technique
at its mild, medium and strong settings, alone and without fine-tuning, from the study's
``sensitivity.json`` (search/sensitivity_profiles.py)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from devicefit.results.records import StudyRecord
from devicefit.search.greedy_plan import ALLOWANCES, described
from devicefit.search.sensitivity_profiles import read_sensitivity
from devicefit.search.shaped_space import change_text

LEVELS = ("mild", "medium", "strong")


def sensitivity_of(record: StudyRecord) -> dict[str, Any] | None:
    """The study's sensitivity profile; None when it has none.

    Args:
        record: the study; its folder's ``sensitivity.json`` is read.

    Returns:
        The profile as stored (points, key, checks, ...), or None.
    """
    return read_sensitivity(Path(record.folder))


def drop_rows(profile: dict[str, Any]) -> list[tuple[str, str, list[float | str | None]]]:
    """(unit, technique, [drop or error per level]) in the profile's order; a level not
    scored (a profile stopped early) is None.

    Args:
        profile: a sensitivity profile (``sensitivity_of``).

    Returns:
        One row per unit and technique; each level's metric drop, ``"failed: why"`` when
        scoring it failed, or None.
    """
    cells: dict[tuple[str, str], dict[str, float | str | None]] = {}
    for p in profile["points"]:
        if p["level"] in LEVELS:
            row = cells.setdefault((p["unit"], p["technique"]), {})
            row[p["level"]] = p["drop"] if p.get("error") is None else f"failed: {p['error']}"
    return [(u, t, [row.get(level) for level in LEVELS]) for (u, t), row in cells.items()]


def sensitivity_figure(rows: list[tuple[str, str, list[Any]]], metric: str) -> Any:
    """Heat map: one row per unit x technique, one column per setting, the drop as colour.

    Args:
        rows: ``drop_rows(profile)``; failed and missing cells are left blank.
        metric: the metric's name, for the colour bar.

    Returns:
        The plotly figure, first row at the top.
    """
    import plotly.graph_objects as go

    names = [f"{unit} · {technique}" for unit, technique, _ in rows][::-1]
    values = [[v if isinstance(v, float | int) else None for v in d] for _, _, d in rows][::-1]
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=list(LEVELS),
            y=names,
            colorscale="Reds",
            colorbar={"title": f"{metric} drop"},
            hovertemplate="%{y}<br>%{x}: drop %{z:.4g}<extra></extra>",
        )
    )
    fig.update_layout(
        height=max(260, 60 + 22 * len(rows)), margin={"l": 10, "r": 10, "t": 30, "b": 40}
    )
    return fig


def _cell(value: float | str | None) -> str:
    if value is None:
        return "<td>n/a</td>"
    if isinstance(value, str):
        return f"<td title='{escape(value)}'>failed</td>"
    return f"<td>{value:+.3g}</td>"


def sensitivity_section(record: StudyRecord, plot_div: Any) -> str:
    """The report's "What each unit tolerates" section.

    Args:
        record: the study.
        plot_div: turns a figure and an element id into HTML (``report_html.plot_div``).

    Returns:
        The HTML section: the drops as a heat map and a table, the savings checks, how the
        profiles shaped the space and the plans made from them; a one-line notice when the
        study has no profile.
    """
    head = "<section id='sensitivity'><h2>What each unit tolerates</h2>"
    profile = sensitivity_of(record)
    if not profile or not profile["points"]:
        return head + "<p>No sensitivity profile in this study.</p></section>"
    rows = drop_rows(profile)
    metric = record.metric.name
    note = _profile_note(profile, metric)
    table = _drops_table(rows)
    figure = plot_div(sensitivity_figure(rows, metric), "sensitivity-plot")
    return (
        head
        + note
        + figure
        + table
        + savings_check_table(profile)
        + step_savings_table(profile)
        + shaping_table(record)
        + profile_plans_list(record)
        + "</section>"
    )


def _profile_note(profile: dict[str, Any], metric: str) -> str:
    """The note saying what the drops are, on how many examples, and how long they took."""
    key = profile.get("key") or {}
    return (
        f"<p class='note'>The {escape(metric)} each unit gives up ({escape(metric)} drop; "
        "higher is worse) when one technique is applied to it alone at a mild, medium and "
        f"strong setting, without fine-tuning, on {key.get('samples', '?')} validation "
        f"examples; units: {escape(str(key.get('granularity', '?')))}. "
        f"Made in {profile.get('seconds') or 0:.0f} s"
        + ("" if profile.get("complete") else "; not finished (the study stopped first)")
        + ".</p>"
    )


def _drops_table(rows: list[tuple[str, str, list[float | str | None]]]) -> str:
    """The drops as an HTML table: one row per unit and technique, one column per level."""
    body = "".join(
        f"<tr><td>{escape(unit)}</td><td>{escape(technique)}</td>"
        + "".join(_cell(v) for v in drops)
        + "</tr>"
        for unit, technique, drops in rows
    )
    return (
        "<table class='sensitivity'><thead><tr><th>unit</th><th>technique</th>"
        + "".join(f"<th>{level}</th>" for level in LEVELS)
        + f"</tr></thead><tbody>{body}</tbody></table>"
    )


def shaping_table(record: StudyRecord) -> str:
    """What the profiles left out of the sampler's space, and where they ended ranges.

    Args:
        record: the study.

    Returns:
        An HTML heading, note and table; "" when the profiles changed nothing.
    """
    if not record.shaping:
        return ""
    rows = "".join(
        f"<tr><td>{escape(d['technique'])}</td><td>{escape(d.get('unit') or 'all units')}</td>"
        f"<td>{escape(change_text(d))}</td>"
        f"<td>{escape(d['why'])}</td></tr>"
        for d in record.shaping
    )
    return (
        "<h3>Search space shaped by the profiles</h3><p class='note'>Left out of the "
        "sampler's trials (the recipes keep them), a range ended where the drop before "
        "fine-tuning is past reach, or a choice held where the profile measured.</p>"
        "<table class='shaping'><thead><tr><th>technique</th>"
        f"<th>unit</th><th>change</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def profile_plans_list(record: StudyRecord) -> str:
    """The greedy plans made from the profiles, each as the settings it took in order, with
    the trial that ran it (a plan of the climb is not run when the one before did not hold).

    Args:
        record: the study.

    Returns:
        An HTML heading, note and list; "" when no plan was made.
    """
    if not record.profile_plans:
        return ""
    ran = {t.profile_plan: t.number for t in record.trials if t.profile_plan}
    items = "".join(
        f"<li>{escape(name)} ({f'trial #{ran[name]}' if name in ran else 'not run'}): "
        + escape(described(choices))
        + "</li>"
        for name, choices in record.profile_plans.items()
    )
    return (
        "<h3>Plans made from the profiles</h3><p class='note'>Most time saved per metric "
        "lost first, until the summed drop reached the plan's allowance (in budgets); run "
        f"as fixed trials after the recipes, a plan over {ALLOWANCES[-1]:g}x only when the one "
        "before it held the budget; below the first plan, milder ones when it missed; where "
        "the plans ended, plans between the last that held and the first that did not.</p>"
        f"<ul class='profile-plans'>{items}</ul>"
    )


def savings_check_table(profile: dict[str, Any]) -> str:
    """The settings whose time saved was predicted from the device profile and then
    measured (search/sensitivity_savings.py); empty when none was checked.

    Args:
        profile: the sensitivity profile.

    Returns:
        An HTML heading, note and table, or "".
    """
    checks = profile.get("savings_check") or []
    if not checks:
        return ""

    def measured(entry: dict[str, Any]) -> str:
        """The measured-ms cell of one check.

        Args:
            entry: one check of ``savings_check``.

        Returns:
            A ``<td>`` with the ms saved, or "not measured" with the error as its title.
        """
        if "error" in entry:
            return f"<td title='{escape(entry['error'])}'>not measured</td>"
        return f"<td>{entry['measured_ms']:.3f}</td>"

    body = "".join(
        f"<tr><td>{escape(c['unit'])}</td><td>{escape(c['technique'])}</td>"
        f"<td>{escape(c['level'])}</td><td>{escape(c['device'])}</td>"
        f"<td>{c['predicted_ms']:.3f}</td>{measured(c)}</tr>"
        for c in checks
    )
    return (
        "<h3>Time saved: predicted and measured</h3><p class='note'>Predicted from the "
        "untouched model's time per layer on the device and the share of each layer's MACs "
        "the setting removes; measured in paired rounds of the untouched and the changed "
        "float32 file.</p><table class='savings-check'><thead><tr><th>unit</th>"
        "<th>technique</th><th>setting</th><th>device</th><th>predicted ms</th>"
        f"<th>measured ms</th></tr></thead><tbody>{body}</tbody></table>"
    )


def step_savings_table(profile: dict[str, Any]) -> str:
    """Each setting applied to every unit at once, predicted and measured in the file the
    plans convert to (search/step_savings.py): the efficiency the greedy ranked it by.

    Args:
        profile: the sensitivity profile.

    Returns:
        An HTML heading, note and table, or "" when no step was measured.
    """
    measured = profile.get("step_savings") or {}
    if not measured.get("steps"):
        return ""

    def cells(entry: dict[str, Any]) -> str:
        """The measured and efficiency cells of one step.

        Args:
            entry: one step of ``step_savings``.

        Returns:
            Two ``<td>`` cells (ms saved of the untouched ms, and the efficiency or "too
            small"), or one spanning both with "not measured" and the error as its title.
        """
        if "error" in entry:
            return f"<td title='{escape(entry['error'])}' colspan='2'>not measured</td>"
        ratio = entry.get("efficiency")
        return (
            f"<td>{entry['measured_ms']:.3f} of {entry['untouched_ms']:.3f}</td>"
            f"<td>{'too small' if ratio is None else f'{ratio:.2f}'}</td>"
        )

    body = "".join(
        f"<tr><td>{escape(s['technique'])}</td><td>{escape(s['level'])}</td>"
        f"<td>{s['units']}</td><td>{s['predicted_ms']:.3f}</td>{cells(s)}</tr>"
        for s in measured["steps"]
    )
    return (
        f"<h3>Time saved by each setting on every unit, {escape(measured['mode'])} file on "
        f"{escape(measured['device'])}</h3><p class='note'>Measured in paired rounds against "
        "the untouched file; the plans count each unit's predicted saving times the "
        "setting's efficiency (measured over predicted), and never take a setting that "
        "made the file slower.</p><table class='step-savings'><thead><tr><th>technique</th>"
        "<th>setting</th><th>units</th><th>predicted ms</th><th>measured ms</th>"
        f"<th>efficiency</th></tr></thead><tbody>{body}</tbody></table>"
    )

"""report.html: one self-contained page (plotly.js inlined, nothing fetched) to decide from.

Sections: headline, the front, hypervolume over trials and time, where the time goes, what
each unit tolerates, techniques on the front, parameter importances, a sortable and
filterable table of every trial, and a detail view per trial (shown when the address ends
in ``#trial-<N>``: a table row or a plot point).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING

from devicefit.results.figures import (
    compare_figure,
    front_figure,
    hypervolume_figure,
    importance_figure,
    techniques_figure,
)
from devicefit.results.hypervolume import (
    hypervolume_history,
    reference_for,
    reference_point,
    study_hypervolume,
)
from devicefit.results.importance import param_importances
from devicefit.results.pareto import status
from devicefit.results.records import StudyRecord, TrialRecord
from devicefit.results.sensitivity_table import sensitivity_section
from devicefit.results.table import headline, recipe_line
from devicefit.results.time_profile import time_profile_section
from devicefit.results.trial_detail import detail_html, original_layer_macs
from devicefit.results.trials_table import trials_table_html

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from devicefit.results.comparison import StudyComparison

LIVE_RELOAD_S = 20  # how often a running study's page reloads itself
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def plot_div(fig: go.Figure, div_id: str) -> str:
    """A figure as an HTML fragment, without plotly.js (the page inlines it once).

    Args:
        fig: the plotly figure.
        div_id: the element id, used by the page's script and links.

    Returns:
        The figure's ``<div>`` and its script.
    """
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)


def render_html(record: StudyRecord, front: Sequence[TrialRecord], *, live: bool = False) -> str:
    """The whole report.html page of a study.

    Args:
        record: the study.
        front: its Pareto front.
        live: the study is still running: the page reloads itself every ``LIVE_RELOAD_S``.

    Returns:
        A self-contained HTML document (plotly.js inlined, nothing fetched).
    """
    front_numbers = {t.number for t in front}
    ref = reference_point(record)
    volume = study_hypervolume(record, ref)
    importances = param_importances(record)
    before = original_layer_macs(record)
    sections = [
        _headline_section(record, front),
        "<section id='front'><h2>Pareto front</h2>"
        "<p class='note'>Every completed trial, one point per panel. Blue: on the front. Grey: "
        "dominated; grey crosses: infeasible (over the metric-drop budget or a device limit). "
        "Orange: the float32/float16/int8 baselines; green triangles: one-technique recipes. "
        "Latency error bars run from the fastest run to the 90th percentile. "
        "Click a point for its details.</p>"
        + plot_div(front_figure(record, front), "front-plot")
        + "</section>",
        _hypervolume_section(record, ref, volume),
        time_profile_section(record, plot_div),
        sensitivity_section(record, plot_div),
        "<section id='techniques'><h2>Techniques on the front</h2>"
        + plot_div(techniques_figure(record, front), "techniques-plot")
        + _settings_table(front)
        + "</section>",
        _importance_section(importances.by_objective, importances.reason),
        "<section id='trials'><h2>All trials</h2>"
        "<p class='controls'><input id='filter' type='search' placeholder='filter rows by text'>"
        f" {_status_select(record, front_numbers)} <span id='shown'></span></p>"
        "<p class='note'>Click a column to sort; click a trial number for its details.</p>"
        + trials_table_html(record, front_numbers)
        + "</section>",
        "<section id='details'><h2>Trial details</h2><p class='note'>Click a trial's number "
        "in the table or its point in the front plot to see it here.</p>"
        + "\n".join(
            detail_html(record, t, status(record, t, front_numbers), before) for t in record.trials
        )
        + "</section>",
    ]
    return page(f"devicefit: {record.name}", record.name, _facts(record, front), sections, live)


def _headline_section(record: StudyRecord, front: Sequence[TrialRecord]) -> str:
    line = recipe_line(record, front)
    extra = f"<p class='recipe'>{escape(line)}</p>" if line else ""
    return (
        f"<section id='headline'><p class='headline'>{escape(headline(record, front))}</p>"
        f"{extra}</section>"
    )


def _facts(record: StudyRecord, front: Sequence[TrialRecord]) -> str:
    completed = sum(t.complete for t in record.trials)
    failed = sum(t.state == "FAIL" for t in record.trials)
    running = sum(t.state == "RUNNING" for t in record.trials)
    pruned = sum(t.state == "PRUNED" for t in record.trials)
    drop = record.max_metric_drop
    facts = [
        f"task {record.task}" if record.task else "",
        f"metric {record.metric.label()}",
        f"devices {', '.join(record.devices) or '—'}",
        f"{len(record.trials)} trials ({completed} completed, {failed} failed"
        + (f", {running} running" if running else "")
        + (f", {pruned} pruned as hopeless" if pruned else "")
        + ")",
        f"{len(front)} on the front",
        f"max metric drop {drop:g}" if drop is not None else "",
        f"devicefit {record.version}" if record.version else "",
    ]
    return " · ".join(f for f in facts if f)


def _hypervolume_section(record: StudyRecord, ref: list[float] | None, volume: float) -> str:
    if ref is None:
        return (
            "<section id='hypervolume'><h2>Hypervolume</h2><p>No feasible trial yet.</p></section>"
        )
    point = ", ".join(
        f"{o.name} {(-r if o.maximize else r):.4g}{(' ' + o.unit) if o.unit else ''}"
        for o, r in zip(record.objectives, ref, strict=True)
    )
    history = hypervolume_history(record, ref)
    return (
        "<section id='hypervolume'><h2>Hypervolume</h2>"
        f"<p id='hypervolume-value' data-value='{volume!r}' "
        f"data-reference='{escape(json.dumps(ref))}'>"
        f"Hypervolume <b>{volume:.6g}</b> against the reference point ({escape(point)}): the "
        "metric at the edge of the budget and the float32 model on every other objective, so "
        "only what beats doing nothing counts. A curve still rising means more trials would "
        "pay; a flat one, that the search has converged.</p>"
        + plot_div(hypervolume_figure(history), "hypervolume-plot")
        + "</section>"
    )


def _settings_table(front: Sequence[TrialRecord]) -> str:
    settings: dict[str, Counter[str]] = {}
    for t in front:
        for step in (t.plan or {}).get("steps", []):
            params = ", ".join(f"{k}={v}" for k, v in sorted(step.get("params", {}).items()))
            settings.setdefault(step["technique"], Counter())[params or "(defaults)"] += 1
    if not settings:
        return "<p>No front member uses a technique yet.</p>"
    rows = []
    for tech, seen in sorted(settings.items()):
        text = "; ".join(f"{p} ×{n}" if n > 1 else p for p, n in seen.most_common())
        rows.append(f"<tr><td><code>{escape(tech)}</code></td><td>{escape(text)}</td></tr>")
    return (
        "<table class='settings'><thead><tr><th>technique</th><th>settings on the front</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _importance_section(by_objective: dict[str, dict[str, float]], reason: str) -> str:
    head = "<section id='importance'><h2>Parameter importances</h2>"
    if not by_objective:
        return head + f"<p>Not available: {escape(reason)}.</p></section>"
    note = (
        "<p class='note'>Which search parameters decide each objective (Optuna's PED-ANOVA "
        "evaluator over the completed trials; it handles parameters that exist only when "
        "their technique is on).</p>"
    )
    return head + note + plot_div(importance_figure(by_objective), "importance-plot") + "</section>"


def _status_select(record: StudyRecord, front_numbers: set[int]) -> str:
    seen = sorted({status(record, t, front_numbers) for t in record.trials})
    options = "".join(f"<option value='{escape(s)}'>{escape(s)}</option>" for s in seen)
    return f"<select id='status-filter'><option value=''>every status</option>{options}</select>"


def compare_html(c: StudyComparison) -> str:
    """Several studies' fronts in one page, hypervolumes against one reference point.

    Args:
        c: the comparison (``compare_studies``).

    Returns:
        A self-contained HTML document: the studies table, their fronts and their
        hypervolume over the search.
    """
    fronts = c.fronts
    first = c.records[0]
    rows = []
    for label, record, front, volume in zip(c.labels, c.records, fronts, c.volumes, strict=True):
        rows.append(
            f"<tr data-study='{escape(label)}'><td>{escape(label)}</td>"
            f"<td>{escape(str(record.folder))}</td><td>{escape(', '.join(record.devices))}</td>"
            f"<td>{sum(t.complete for t in record.trials)}</td><td>{len(front)}</td>"
            f"<td class='hv' data-value='{volume!r}'>{volume:.6g}</td>"
            f"<td>{escape(headline(record, front))}</td></tr>"
        )
    point = "n/a"
    if c.reference is not None:
        point = ", ".join(
            f"{o.name if c.same_devices or not o.device else o.kind} "
            f"{(-r if o.maximize else r):.4g}"
            for o, r in zip(first.objectives, c.reference, strict=True)
        )
    series = {
        label: hypervolume_history(r, reference_for(c.reference, perm) if c.reference else None)
        for label, r, perm in zip(c.labels, c.records, c.perms, strict=True)
    }
    caveat = f"<p class='note'>{escape(c.caveat())}</p>" if c.caveat() else ""
    sections = [
        "<section id='studies'><h2>Studies</h2>"
        f"<p id='reference-point' data-reference='{escape(json.dumps(c.reference))}'>Every "
        f"hypervolume is against one reference point: ({escape(point)}), the worst of the "
        f"studies' own.</p>{caveat}"
        "<table id='studies-table'><thead><tr><th>study</th><th>folder</th><th>devices</th>"
        "<th>completed</th><th>on the front</th><th>hypervolume</th><th>headline</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table></section>",
        "<section id='front'><h2>Fronts</h2>"
        + plot_div(compare_figure(c.records, fronts, c.labels, c.perms), "front-plot")
        + "</section>",
        "<section id='hypervolume'><h2>Hypervolume over the search</h2>"
        + plot_div(hypervolume_figure([], series), "hypervolume-plot")
        + "</section>",
    ]
    names = ", ".join(c.labels)
    return page(f"devicefit: {names}", f"Comparison: {names}", "", sections, live=False)


def page(title: str, heading: str, facts: str, sections: Sequence[str], live: bool) -> str:
    """Wrap sections in the report's HTML document, with its style and script.

    Args:
        title: the browser tab's title.
        heading: the page's heading.
        facts: one line of facts under it (may be "").
        sections: HTML fragments, in order.
        live: the study is still running: reload every ``LIVE_RELOAD_S`` and say so.

    Returns:
        The complete HTML document, stamped with the time it was written.
    """
    from plotly.offline import get_plotlyjs

    refresh = f'<meta http-equiv="refresh" content="{LIVE_RELOAD_S}">' if live else ""
    written = datetime.now().isoformat(timespec="seconds")
    state = (
        f"Study running: this page reloads every {LIVE_RELOAD_S} s. Written {written}. "
        "(Trials stay 'running' if their driver died: devicefit resume re-runs them.)"
        if live
        else f"Written {written}."
    )
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"{refresh}<title>{escape(title)}</title><style>{_CSS}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<h1>{escape(heading)}</h1><p class='facts'>{escape(facts)}</p>"
        f"<p id='state' class='facts' data-live='{str(live).lower()}'>{escape(state)}</p>"
        + "\n".join(sections)
        + f"<script>{_JS}</script></body></html>\n"
    )


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
.headline { font-size: 1.25em; font-weight: 600; }
.facts, .note { color: #666; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
#trials-table td:nth-last-child(-n+2), #trials-table th:nth-last-child(-n+2) {
  text-align: left; font-family: monospace; }
#trials-table th { cursor: pointer; user-select: none; position: sticky; top: 0; background: #fff; }
#trials-table th.asc::after { content: " ▲"; } #trials-table th.desc::after { content: " ▼"; }
tr[data-status=front] { background: #eaf2fb; }
tr[data-status=fail] td { color: #a33; }
.settings td:last-child, #studies-table td:last-child { text-align: left; }
.detail { display: none; border: 1px solid #ccc; padding: 0 1em; margin: 1em 0; }
.detail:target { display: block; }
.detail .fail { color: #a33; }
.detail td.why { text-align: left; color: #666; }
.layers tr.changed { background: #fff4e5; } .layers tr.total th { border-top: 2px solid #999; }
pre.cmd { background: #f4f4f4; padding: 0.5em; }
"""

# Sorting and filtering without any library; a plot click opens the trial's detail view.
_JS = """
(function () {
  var table = document.getElementById('trials-table');
  if (table) {
    var body = table.tBodies[0];
    var filter = document.getElementById('filter');
    var statusFilter = document.getElementById('status-filter');
    var shown = document.getElementById('shown');
    function apply() {
      var text = (filter.value || '').toLowerCase(), want = statusFilter.value, n = 0;
      Array.prototype.forEach.call(body.rows, function (row) {
        var ok = (!want || row.dataset.status === want) &&
                 (!text || row.textContent.toLowerCase().indexOf(text) >= 0);
        row.style.display = ok ? '' : 'none';
        if (ok) { n += 1; }
      });
      shown.textContent = n + ' of ' + body.rows.length + ' trials shown';
    }
    filter.addEventListener('input', apply);
    statusFilter.addEventListener('change', apply);
    apply();
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener('click', function () {
        var asc = !th.classList.contains('asc');
        Array.prototype.forEach.call(th.parentNode.cells, function (c) {
          c.classList.remove('asc', 'desc');
        });
        th.classList.add(asc ? 'asc' : 'desc');
        var numeric = th.dataset.type === 'num';
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col], y = b.cells[col], r;
          if (numeric) {
            var u = parseFloat(x.dataset.v), v = parseFloat(y.dataset.v);
            // Rows without a number go last whichever the direction.
            if (isNaN(u) || isNaN(v)) { return isNaN(u) - isNaN(v); }
            r = u - v;
          } else {
            r = x.textContent.localeCompare(y.textContent);
          }
          return asc ? r : -r;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }
  window.addEventListener('load', function () {
    var gd = document.getElementById('front-plot');
    if (!gd || !gd.on) { return; }
    gd.on('plotly_click', function (ev) {
      var p = ev.points && ev.points[0];
      if (p && p.customdata && document.getElementById('trial-' + p.customdata[0])) {
        window.location.hash = 'trial-' + p.customdata[0];
      }
    });
  });
})();
"""

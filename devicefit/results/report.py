"""Reports of a study: terminal table, self-contained HTML, pareto.json and trials.csv."""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from devicefit.results._io import write_atomic
from devicefit.results.pareto import compare, pareto_front, status
from devicefit.results.plot import build_figure
from devicefit.results.records import StudyRecord, TrialRecord
from devicefit.results.table import front_rows, front_table, headline

REPORT_HTML = "report.html"
PARETO_JSON = "pareto.json"
TRIALS_CSV = "trials.csv"
LATENCY_FIELDS = ("median_ms", "p90_ms", "min_ms", "std_ms", "count", "threads")


def print_report(record: StudyRecord, console: Console) -> None:
    front = pareto_front(record)
    console.print(headline(record, front))
    failed = [t for t in record.trials if t.state == "FAIL"]
    if front:
        console.print(front_table(record, front))
    if failed:
        console.print(f"{len(failed)} failed trial(s); reasons are in {TRIALS_CSV}.")


def write_report(record: StudyRecord, folder: Path) -> dict[str, Path]:
    """Write the three report files into ``folder``; returns them keyed html, pareto, trials."""
    folder = Path(folder)
    front = pareto_front(record)
    return {
        "html": write_atomic(folder / REPORT_HTML, render_html(record, front)),
        "pareto": write_atomic(folder / PARETO_JSON, pareto_json(record, front)),
        "trials": write_atomic(folder / TRIALS_CSV, trials_csv(record, front)),
    }


def pareto_json(record: StudyRecord, front: Sequence[TrialRecord]) -> str:
    items = []
    for t in front:
        cmp = compare(record, t)
        items.append(
            {
                "number": t.number,
                "values": {o.name: t.values[o.name] for o in record.objectives},
                "plan": t.plan,
                "plan_short": t.plan_short,
                "baseline": t.baseline,
                "metrics": t.metrics,
                "vs_float32": {
                    "reference": cmp.reference,
                    "metric_change": cmp.metric_change,
                    "speedup": cmp.speedup,
                    "size_ratio": cmp.size_ratio,
                    "macs_ratio": cmp.macs_ratio,
                },
            }
        )
    # Strict JSON: an infinite latency would otherwise be written as the non-standard Infinity.
    return json.dumps(_finite(items), indent=2, allow_nan=False) + "\n"


def trials_csv(record: StudyRecord, front: Sequence[TrialRecord]) -> str:
    devices = [o.device or o.name for o in record.latency_objectives]
    header = ["number", "state", "status", "feasible"]
    header += [f"value_{o.name}" for o in record.objectives]
    header += ["metric", "metric_change"]
    header += [f"latency_{d}_{f}" for d in devices for f in LATENCY_FIELDS]
    header += [f"speedup_{d}" for d in devices]
    header += ["size_bytes", "macs", "params", "plan_short", "baseline", "retry_of", "fail_reason"]
    front_numbers = {t.number for t in front}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for t in record.trials:
        cmp = compare(record, t) if t.complete else None
        # Feasibility means nothing for a trial that never finished: leave the cell empty.
        feasible = t.feasible if t.complete else None
        row: list[Any] = [t.number, t.state, status(record, t, front_numbers), feasible]
        row += [t.values.get(o.name) for o in record.objectives]
        row += [t.metric(record.objectives), _round(cmp.metric_change if cmp else None)]
        row += [t.latency(d).get(f) for d in devices for f in LATENCY_FIELDS]
        row += [_round(cmp.speedup.get(d)) if cmp else None for d in devices]
        row += [t.metrics.get(k) for k in ("size_bytes", "macs", "params")]
        row += [t.plan_short, t.baseline, t.retry_of, t.fail_reason]
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def render_html(record: StudyRecord, front: Sequence[TrialRecord]) -> str:
    """A single file that opens offline: plotly.js is inlined, nothing is fetched."""
    figure = build_figure(record, front).to_html(
        full_html=False,
        include_plotlyjs=True,
        include_mathjax=False,
        config={"displaylogo": False, "responsive": True},
    )
    e = html.escape
    completed = sum(t.complete for t in record.trials)
    failed = sum(t.state == "FAIL" for t in record.trials)
    facts = [
        f"task {record.task}" if record.task else "",
        f"metric {record.metric.label()}",
        f"devices {', '.join(d for d in record.devices) or '—'}",
        f"{len(record.trials)} trials ({completed} completed, {failed} failed)",
        f"{len(front)} on the front",
        f"max metric drop {record.max_metric_drop:g}" if record.max_metric_drop is not None else "",
        f"devicefit {record.version}" if record.version else "",
    ]
    return _PAGE.format(
        title=e(f"devicefit: {record.name}"),
        name=e(record.name),
        headline=e(headline(record, front)),
        facts=e(" · ".join(f for f in facts if f)),
        figure=figure,
        table=_html_table(record, front),
        generated=e(datetime.now().isoformat(timespec="seconds")),
        files=e(f"{PARETO_JSON} (front members), {TRIALS_CSV} (every trial)"),
    )


def _html_table(record: StudyRecord, front: Sequence[TrialRecord]) -> str:
    if not front:
        return "<p>No feasible completed trial yet.</p>"
    rows = front_rows(record, front)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in rows.headers)
    body = []
    for cells, baseline in zip(rows.rows, rows.baseline, strict=True):
        cls = ' class="baseline"' if baseline else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _round(value: float | None) -> float | None:
    # Derived numbers only: 96.2 - 97.0 should read -0.8, not -0.7999999999999972.
    return None if value is None else round(value, 9)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
.headline {{ font-size: 1.2em; font-weight: 600; }}
.facts, footer {{ color: #666; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
td:last-child, th:last-child {{ text-align: left; font-family: monospace; }}
tr.baseline {{ background: #fff4e5; }}
</style>
</head>
<body>
<h1>{name}</h1>
<p class="headline">{headline}</p>
<p class="facts">{facts}</p>
{figure}
<h2>Pareto front</h2>
<p class="facts">Sorted by latency; baselines highlighted; latency is the median (p90) in ms;
speedup and change are against the float32 baseline trial.</p>
{table}
<footer><p>Generated {generated}. Also written: {files}.</p></footer>
</body>
</html>
"""

"""Reports of a study: terminal table, self-contained HTML, and JSON/CSV/Markdown for scripts.

Every view is built from one ``StudyRecord`` and the same helpers, so the numbers agree.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from devicefit.results._io import write_atomic
from devicefit.results.hypervolume import reference_point, study_hypervolume
from devicefit.results.pareto import compare, pareto_front, status
from devicefit.results.records import StudyRecord, TrialRecord
from devicefit.results.sensitivity_table import sensitivity_of
from devicefit.results.speedups import confirmed
from devicefit.results.table import front_rows, front_table, headline, recipe_line
from devicefit.results.time_profile import device_profiles

REPORT_HTML = "report.html"
PARETO_JSON = "pareto.json"
TRIALS_CSV = "trials.csv"
LATENCY_FIELDS = ("median_ms", "p90_ms", "min_ms", "std_ms", "count", "threads")


def print_report(record: StudyRecord, console: Console) -> None:
    """Print the headline, the best recipe, the front table and failure counts.

    Args:
        record: the study.
        console: where to print (rich).
    """
    front = pareto_front(record)
    console.print(headline(record, front))
    line = recipe_line(record, front)
    if line:
        console.print(line)
    failed = [t for t in record.trials if t.state == "FAIL"]
    if front:
        console.print(front_table(record, front))
    if failed:
        console.print(f"{len(failed)} failed trial(s); reasons are in {TRIALS_CSV}.")
    pruned = sum(t.state == "PRUNED" for t in record.trials)
    if pruned:
        console.print(f"{pruned} trial(s) pruned as hopeless ({TRIALS_CSV}).")


def write_report(record: StudyRecord, folder: Path, *, live: bool = False) -> dict[str, Path]:
    """Write report.html, pareto.json and trials.csv into ``folder``, each atomically.

    ``live``: the study is still running, so the page reloads itself to show new trials.

    All three are rendered before any is written, so a failure leaves the old set whole.

    Args:
        record: the study.
        folder: the results folder (made if missing).
        live: the study is still running (see above).

    Returns:
        ``{"html": ..., "pareto": ..., "trials": ...}``: the paths written.

    Raises:
        OSError: a file could not be written.
    """
    from devicefit.results.report_html import render_html

    folder = Path(folder)
    front = pareto_front(record)
    # Everything rendered before anything is written: a failure leaves the old set whole.
    texts = {
        REPORT_HTML: render_html(record, front, live=live),
        PARETO_JSON: pareto_json(record, front),
        TRIALS_CSV: trials_csv(record, front),
    }
    paths = {name: write_atomic(folder / name, text) for name, text in texts.items()}
    return {"html": paths[REPORT_HTML], "pareto": paths[PARETO_JSON], "trials": paths[TRIALS_CSV]}


def formatted(record: StudyRecord, fmt: str) -> str:
    """The report as text for scripts and pull requests: json, csv or markdown.

    Args:
        record: the study.
        fmt: "json" (pareto.json's content), "csv" (trials.csv's) or "markdown".

    Returns:
        The text, ending in a newline.

    Raises:
        ValueError: ``fmt`` is none of the three.
    """
    front = pareto_front(record)
    if fmt == "json":
        return pareto_json(record, front)
    if fmt == "csv":
        return trials_csv(record, front)
    if fmt == "markdown":
        return markdown(record, front)
    raise ValueError(f"unknown format {fmt!r}; expected json, csv or markdown")


def front_member(record: StudyRecord, t: TrialRecord) -> dict[str, Any]:
    """One front member as plain data, for pareto.json and the comparison JSON.

    Args:
        record: the study.
        t: a trial of the front (it has every objective value).

    Returns:
        Its number, objective values, plan, baseline, recipe and metrics, and ``vs_float32``:
        the metric change, speed-ups from the stored medians and from paired confirmation
        (with its 95% interval; None where not confirmed), and size and MACs ratios.
    """
    cmp = compare(record, t)
    return {
        "number": t.number,
        "values": {o.name: t.values[o.name] for o in record.objectives},
        "plan": t.plan,
        "plan_short": t.plan_short,
        "baseline": t.baseline,
        "recipe": t.recipe,
        "metrics": t.metrics,
        "vs_float32": {
            "reference": cmp.reference,
            "metric_change": cmp.metric_change,
            "speedup": cmp.speedup,  # from the stored medians
            "paired_speedup": {  # from the paired confirmation, with its 95% interval
                dev: (s.to_dict() if (s := confirmed(record, t.number, dev, "float32")) else None)
                for dev in cmp.speedup
            },
            "size_ratio": cmp.size_ratio,
            "macs_ratio": cmp.macs_ratio,
        },
    }


def summary(record: StudyRecord, front: Sequence[TrialRecord]) -> dict[str, Any]:
    """The study, its front and its hypervolume as plain data (pareto.json, --format json).

    Args:
        record: the study.
        front: its Pareto front.

    Returns:
        A JSON-ready dict (non-finite numbers not yet replaced: see ``finite``).
    """
    ref = reference_point(record)
    return {
        "study": record.name,
        "task": record.task,
        "metric": {
            "name": record.metric.name,
            "unit": record.metric.unit,
            "higher_is_better": record.metric.higher_is_better,
        },
        "max_metric_drop": record.max_metric_drop,
        "objectives": [
            {"name": o.name, "direction": o.direction, "unit": o.unit, "device": o.device}
            | ({"kind": o.kind} if o.device else {})
            for o in record.objectives
        ],
        "headline": headline(record, front),
        "recipe_line": recipe_line(record, front),
        "confirmed": record.confirmed or None,
        "trials": {
            "total": len(record.trials),
            "complete": sum(t.complete for t in record.trials),
            "failed": sum(t.state == "FAIL" for t in record.trials),
            "pruned": sum(t.state == "PRUNED" for t in record.trials),
        },
        # In the objectives' own units and directions (the volume itself is computed with
        # maximised objectives negated).
        "reference_point": reference_values(record, ref),
        "hypervolume": study_hypervolume(record, ref),
        "front": [front_member(record, t) for t in front],
        # Where the untouched model's time goes on each device (device_profile.json)
        "device_profile": device_profiles(record),
        # What each unit gives up to each technique, without fine-tuning (sensitivity.json)
        "sensitivity": sensitivity_of(record),
    }


def reference_values(record: StudyRecord, ref: Sequence[float] | None) -> dict[str, float] | None:
    """A reference point in the objectives' own units and directions, by objective name.

    Args:
        record: the study whose objectives ``ref`` is ordered by.
        ref: a point in minimisation space (maximised objectives negated), or None.

    Returns:
        Objective name -> value, maximised objectives negated back; None when ``ref`` is.
    """
    if ref is None:
        return None
    return {o.name: (-r if o.maximize else r) for o, r in zip(record.objectives, ref, strict=True)}


def pareto_json(record: StudyRecord, front: Sequence[TrialRecord]) -> str:
    """The content of pareto.json: ``summary`` as strict JSON.

    Args:
        record: the study.
        front: its Pareto front.

    Returns:
        Indented JSON ending in a newline; infinities and NaN written as null.
    """
    # Strict JSON: an infinite latency would otherwise be written as the non-standard Infinity.
    return json.dumps(finite(summary(record, front)), indent=2, allow_nan=False) + "\n"


def trials_csv(record: StudyRecord, front: Sequence[TrialRecord]) -> str:
    """The content of trials.csv: one row per trial, every state.

    Args:
        record: the study.
        front: its Pareto front, for each row's status.

    Returns:
        CSV with a header row: values, metric and its change, per-device latency fields and
        speed-ups, size, MACs, plan and why a trial failed; empty cells where not known.
    """
    devices = [o.device or o.name for o in record.latency_objectives]
    header = ["number", "state", "status", "feasible"]
    header += [f"value_{o.name}" for o in record.objectives]
    header += ["metric", "metric_change"]
    header += [f"latency_{d}_{f}" for d in devices for f in LATENCY_FIELDS]
    header += [f"speedup_{d}" for d in devices]
    header += ["size_bytes", "macs", "params", "plan_short", "baseline", "recipe", "retry_of"]
    header += ["fail_reason", "profile_plan"]
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
        row += [t.stored.size_bytes, t.stored.macs, t.stored.params] if t.stored else [None] * 3
        row += [t.plan_short, t.baseline, t.recipe, t.retry_of, t.fail_reason, t.profile_plan]
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def markdown(record: StudyRecord, front: Sequence[TrialRecord]) -> str:
    """Headline and front table, ready to paste into a pull request.

    Args:
        record: the study.
        front: its Pareto front.

    Returns:
        Markdown ending in a newline: the headline, the best recipe, the front table, the
        hypervolume with its reference point, and the front's size.
    """
    lines = [f"### {record.name}", "", headline(record, front)]
    line = recipe_line(record, front)
    if line:
        lines += ["", line]
    if front:
        rows = front_rows(record, front)
        lines += ["", "| " + " | ".join(rows.headers) + " |"]
        lines.append("|" + "|".join("---:" for _ in rows.headers[:-1]) + "|---|")
        lines += [
            "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in rows.rows
        ]
    ref = reference_values(record, reference_point(record))
    if ref is not None:
        point = ", ".join(f"{k} {v:.4g}" for k, v in ref.items())
        lines += ["", f"Hypervolume {study_hypervolume(record):.6g} against ({point})."]
    done = sum(t.complete for t in record.trials)
    lines += ["", f"{len(front)} on the front of {done} completed trials."]
    return "\n".join(lines) + "\n"


def _round(value: float | None) -> float | None:
    # Derived numbers only: 96.2 - 97.0 should read -0.8, not -0.7999999999999972.
    return None if value is None else round(value, 9)


def finite(value: Any) -> Any:
    """``value`` with every infinite or NaN float replaced by None, for strict JSON.

    Args:
        value: JSON-like data; dicts, lists and tuples are walked.

    Returns:
        A copy with non-finite floats as None (tuples become lists); other values as given.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value

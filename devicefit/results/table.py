"""The front as rows of text, shared by the terminal table and the HTML report.

One row builder keeps the two views showing the same numbers with the same rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from devicefit.results.pareto import best_candidate, best_recipe, by_latency, compare
from devicefit.results.records import Objective, StudyRecord, TrialRecord
from devicefit.results.speedups import confirmed, fmt_times

NA = "—"


@dataclass
class Rows:
    headers: list[str]
    rows: list[list[str]]
    baseline: list[str | None]  # the baseline kind of each row, for highlighting
    numbers: list[int]


def front_rows(record: StudyRecord, front: Sequence[TrialRecord]) -> Rows:
    """Front members sorted by latency on the first device, one list of cells each.

    Args:
        record: the study.
        front: its Pareto front.

    Returns:
        Headers and one row of text cells per member (metric and its change, latency and
        speed-up per device, other objectives, size, MACs, params, plan), with each row's
        baseline kind and trial number.
    """
    devices = [o.device or o.name for o in record.latency_objectives]
    multi = len(devices) > 1
    unit = f" ({record.metric.unit})" if record.metric.unit else ""
    headers = ["#", f"{record.metric.name}{unit}", "Δ vs float32"]
    for dev in devices:
        prefix = f"{dev} " if multi else ""
        headers += [f"{prefix}latency ms [95% CI] (p90)", f"{prefix}speedup [95% CI]"]
    # Memory, energy, temperature objectives: a member may be on the front for them alone.
    extra = [o for o in record.objectives[1:] if o.kind != "latency"]
    headers += [f"{o.name} ({o.unit})" if o.unit else o.name for o in extra]
    headers += ["size KB", "MACs (M)", "params", "plan"]

    out = Rows(headers, [], [], [])
    for trial in by_latency(record, front):
        cmp = compare(record, trial)
        label = str(trial.number) + (f" ({trial.baseline})" if trial.baseline else "")
        cells = [label, fmt_num(trial.metric(record.objectives)), fmt_signed(cmp.metric_change)]
        for obj, dev in zip(record.latency_objectives, devices, strict=True):
            paired = confirmed(record, trial.number, dev, "float32")
            speedup = paired.text() if paired else fmt_speedup(cmp.speedup.get(dev))
            cells += [fmt_latency(trial, obj), speedup]
        cells += [fmt_num(trial.values.get(o.name)) for o in extra]
        m = trial.stored
        cells += [
            fmt_scaled(m and m.size_bytes, 1024.0, "{:.1f}"),
            fmt_scaled(m and m.macs, 1e6, "{:.2f}"),
            fmt_scaled(m and m.params, 1.0, "{:,.0f}"),
            trial.plan_short or "(original)",
        ]
        out.rows.append(cells)
        out.baseline.append(trial.baseline)
        out.numbers.append(trial.number)
    return out


def front_table(record: StudyRecord, front: Sequence[TrialRecord]) -> Table:
    """The front as a terminal table; baseline rows in cyan.

    Args:
        record: the study.
        front: its Pareto front.

    Returns:
        The rich table of ``front_rows``, titled with the front's size.
    """
    rows = front_rows(record, front)
    completed = sum(t.complete for t in record.trials)
    table = Table(
        title=f"Pareto front of {record.name}: {len(front)} of {completed} completed trials",
        title_justify="left",
    )
    for i, header in enumerate(rows.headers):
        last = i == len(rows.headers) - 1
        table.add_column(header, justify="left" if last else "right", overflow="fold")
    for cells, baseline in zip(rows.rows, rows.baseline, strict=True):
        table.add_row(*cells, style="cyan" if baseline else None)
    return table


def fmt_num(value: float | None) -> str:
    """A number for a table cell: two decimals, or three significant digits when very small
    or very large.

    Args:
        value: the number, or None when not known.

    Returns:
        The text; an em dash for None.
    """
    # Two decimals read well for %, dB and ms; tiny values (MSE) keep significant digits.
    if value is None:
        return NA
    return f"{value:.2f}" if value == 0 or 0.01 <= abs(value) < 1e5 else f"{value:.3g}"


def fmt_value(value: object, missing: str = NA) -> str:
    """Any cell: floats rounded as fmt_num, integers with thousands separators.

    Args:
        value: the cell's value (booleans and other types as ``str``).
        missing: the text for None.

    Returns:
        The cell's text.
    """
    if value is None:
        return missing
    if isinstance(value, float):
        return fmt_num(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def fmt_signed(value: float | None) -> str:
    """A change, with its sign, rounded as ``fmt_num``.

    Args:
        value: the change, or None when not known.

    Returns:
        The text, e.g. "+0.25" or "-1.20"; an em dash for None.
    """
    if value is None:
        return NA
    return f"{value:+.2f}" if value == 0 or 0.01 <= abs(value) < 1e5 else f"{value:+.3g}"


def fmt_speedup(value: float | None) -> str:
    """A speed-up factor from stored medians.

    Args:
        value: the factor, or None when not known.

    Returns:
        e.g. "2.10×"; an em dash for None.
    """
    return NA if value is None else f"{value:.2f}×"


def fmt_latency(trial: TrialRecord, objective: Objective) -> str:
    """'2.21 [2.20–2.22] (2.30)': the median, its 95% interval, the p90. A file measured
    several times shows the median over its measurements and how many there were.

    Args:
        trial: the trial.
        objective: the latency objective, naming the device.

    Returns:
        The cell's text; an em dash when the trial has no latency there.
    """
    median = trial.latency_median(objective)
    measured = trial.latency(objective.device or "")
    if median is None:
        return NA
    pooled = trial.pooled.get(objective.device or "")
    if pooled:
        return f"{fmt_num(median)} (median of {pooled['measurements']} measurements)"
    text, interval, p90 = fmt_num(median), fmt_interval(measured), measured.get("p90_ms")
    if interval is not None:
        text += f" [{interval}]"
    return text + (f" ({fmt_num(p90)})" if p90 is not None else "")


def fmt_interval(measured: dict[str, Any]) -> str | None:
    """'2.20–2.22': a measurement's 95% interval of the median; None if it has none.

    Args:
        measured: the device's measurement dict (``TrialRecord.latency``).

    Returns:
        The interval's text, or None.
    """
    low, high = measured.get("median_low_ms"), measured.get("median_high_ms")
    return None if low is None or high is None else f"{fmt_num(low)}–{fmt_num(high)}"


def fmt_scaled(value: object, scale: float, pattern: str) -> str:
    """A number divided by ``scale`` and formatted, e.g. bytes as KB.

    Args:
        value: the number; anything else counts as missing.
        scale: what to divide by.
        pattern: a ``str.format`` pattern for the result.

    Returns:
        The text; an em dash when ``value`` is not a number.
    """
    if not isinstance(value, int | float):
        return NA
    return pattern.format(value / scale)


def headline(record: StudyRecord, front: Sequence[TrialRecord]) -> str:
    """One sentence: the best candidate within the budget against the float32 model.

    Args:
        record: the study.
        front: its Pareto front.

    Returns:
        The best candidate's speed-up per device (confirmed or marked unconfirmed), size
        gain and metric change; or why there is none yet.
    """
    completed = [t for t in record.trials if t.complete]
    if not completed:
        return f"{record.name}: no completed trials yet."
    if not front:
        drop = record.max_metric_drop
        budget = f"{drop:g} {record.metric.unit}".strip() if drop is not None else "the budget"
        return (
            f"{record.name}: no feasible candidate; every completed trial lost more than "
            f"{budget} of {record.metric.name}."
        )
    best = best_candidate(record, front)
    if best is None:
        return f"{record.name}: only the float32 model is on the front; nothing beat it."
    cmp = compare(record, best)
    unit = f" {record.metric.unit}" if record.metric.unit else ""
    drop = record.max_metric_drop
    budget = f" ({drop:g}{unit})" if drop is not None else ""
    gains = [_gain(record, best, dev, stored) for dev, stored in cmp.speedup.items()]
    if cmp.size_ratio:
        gains.append(f"{fmt_times(1.0 / cmp.size_ratio)} smaller")
    if cmp.metric_change is None:
        change = f"{record.metric.name} change n/a (no float32 trial or reference metric)"
    else:
        change = f"{fmt_signed(cmp.metric_change)}{unit} {record.metric.name}"
    against = f"against {cmp.reference}" if cmp.reference else "with no float32 reference"
    return (
        f"Best within the metric-drop budget{budget}: {', '.join(gains) or 'no latency'}, "
        f"{change} — trial #{best.number} ({best.plan_short or 'original'}), {against}."
    )


def _gain(record: StudyRecord, trial: TrialRecord, device: str, stored: float | None) -> str:
    """The trial against float32 on one device: from paired rounds when confirmed (with
    the interval), else from the stored medians (said to be unconfirmed)."""
    paired = confirmed(record, trial.number, device, "float32")
    if paired is not None:
        if paired.faster:
            return f"{paired.text()} faster on {device}"
        return f"no faster than float32 on {device} ({paired.text()})"
    if stored is None:
        return f"speed n/a on {device}"
    return f"{fmt_times(stored)} faster on {device} (unconfirmed)"


def recipe_line(record: StudyRecord, front: Sequence[TrialRecord]) -> str:
    """How the headline pick compares with the best obvious one-technique recipe.

    "Faster" only when paired rounds say so (their interval excludes 1); the same file, or
    an interval that contains 1, is "no faster than".

    Args:
        record: the study.
        front: its Pareto front.

    Returns:
        One sentence; "" without a pick, a recipe, a latency objective or the latencies.
    """
    best = best_candidate(record, front)
    recipe = best_recipe(record)
    objs = record.latency_objectives
    if best is None or recipe is None or not objs:
        return ""
    what = f"{recipe.baseline or recipe.recipe}, trial #{recipe.number}"
    if recipe.number == best.number:
        # Also when a searched trial made the recipe's very file: one candidate, one trial.
        return f"No faster than the best one-technique recipe ({what}): it is the pick itself."
    device = objs[0].device or objs[0].name
    paired = confirmed(record, best.number, device, "peer")
    if paired is not None and record.confirmed.get("peer") == recipe.number:
        if paired.faster:
            return (
                f"Against the best one-technique recipe ({what}): {paired.text()} faster on "
                f"{device} (paired rounds)."
            )
        verdict = "slower than" if paired.slower else "no faster than"
        return (
            f"{verdict.capitalize()} the best one-technique recipe ({what}) on {device}: "
            f"{paired.text()} (paired rounds)."
        )
    mine, theirs = best.latency_median(objs[0]), recipe.latency_median(objs[0])
    if not mine or not theirs:
        return ""
    return (
        f"Against the best one-technique recipe ({what}, {fmt_num(theirs)} ms): "
        f"{fmt_times(theirs / mine)} on {device} by stored medians, unconfirmed "
        "(devicefit report --confirm measures both in paired rounds)."
    )

"""The report's table of every trial: each metric in its own sortable column.

Cells carry their raw number in ``data-v`` so the page sorts numerically whatever the
display rounding; a column appears only if some trial has a value for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any

from devicefit.results.pareto import compare, status
from devicefit.results.records import StudyRecord, TrialRecord
from devicefit.results.speedups import confirmed
from devicefit.results.table import NA, fmt_interval, fmt_signed, fmt_value

DEVICE_FIELDS = (
    ("median_ms", "median ms"),
    ("p90_ms", "p90 ms"),
    ("std_ms", "std ms"),
    ("count", "runs"),
    ("peak_memory_mb", "peak MB"),
    ("energy_per_inference_mj", "energy mJ"),
    ("temperature_after_c", "temp °C"),
)


@dataclass
class Column:
    header: str
    value: Callable[[TrialRecord], Any]
    text: Callable[[Any], str] = fmt_value
    numeric: bool = True


def columns(record: StudyRecord, front_numbers: set[int]) -> list[Column]:
    """The columns of the trials table, after the trial number.

    Per-device measurement columns appear only when some trial has a value for them; the
    paired speed-up only when the study has confirmations.

    Args:
        record: the study.
        front_numbers: the trial numbers of the front, for the status column.

    Returns:
        The columns, in display order.
    """
    unit = f" {record.metric.unit}" if record.metric.unit else ""
    cols = [
        Column("status", lambda t: status(record, t, front_numbers), numeric=False),
        Column(f"{record.metric.name}{unit}", lambda t: t.metric(record.objectives)),
        Column(
            "Δ vs float32",
            lambda t: compare(record, t).metric_change if t.complete else None,
            text=fmt_signed,
        ),
    ]
    devices = [o.device for o in record.latency_objectives if o.device]
    for dev in devices:
        prefix = f"{dev} " if len(devices) > 1 else ""
        cols += _device_columns(record, dev, prefix)
    cols += [
        Column("size KB", lambda t: _scaled(t.stored and t.stored.size_bytes, 1024.0)),
        Column("MACs M", lambda t: _scaled(t.stored and t.stored.macs, 1e6)),
        Column("params", lambda t: t.stored and t.stored.params),
        Column("plan", lambda t: t.plan_short or ("(original)" if t.plan else ""), numeric=False),
        Column("fail reason", lambda t: t.fail_reason or "", numeric=False),
    ]
    return cols


def _device_columns(record: StudyRecord, dev: str, prefix: str) -> list[Column]:
    """One device's measurement columns that some trial has a value for, and its speed-up."""
    cols = []
    for key, label in DEVICE_FIELDS:
        if any(t.latency(dev).get(key) is not None for t in record.trials):
            cols.append(Column(prefix + label, _measured(dev, key)))
    if any(t.latency(dev).get("median_low_ms") is not None for t in record.trials):
        cols.append(
            Column(
                prefix + "median 95% CI",
                _interval(dev),
                numeric=False,
            )
        )
    if record.confirmed:
        cols.append(
            Column(
                prefix + "speedup [95% CI] (paired)",
                _paired(record, dev),
                numeric=False,
            )
        )
    return cols


# Column values on one device: closures, as mypy cannot type a lambda that binds the loop's
# device (and field) as default arguments.
def _measured(device: str, key: str) -> Callable[[TrialRecord], Any]:
    return lambda t: t.latency(device).get(key)


def _interval(device: str) -> Callable[[TrialRecord], str | None]:
    return lambda t: fmt_interval(t.latency(device))


def _paired(record: StudyRecord, device: str) -> Callable[[TrialRecord], str | None]:
    def speedup_text(trial: TrialRecord) -> str | None:
        """The trial's confirmed speed-up over float32 on the device.

        Args:
            trial: the trial.

        Returns:
            e.g. '3.94× [3.90–3.98]', or None when not confirmed.
        """
        speedup = confirmed(record, trial.number, device, "float32")
        return speedup.text() if speedup else None

    return speedup_text


def _scaled(value: Any, scale: float) -> float | None:
    return value / scale if isinstance(value, int | float) else None


def trials_table_html(record: StudyRecord, front_numbers: set[int]) -> str:
    """The sortable table of every trial.

    Args:
        record: the study.
        front_numbers: the trial numbers of the front.

    Returns:
        The HTML table; each row carries its status and number, numeric cells their raw
        value in ``data-v``, and the number links to the trial's detail view.
    """
    cols = columns(record, front_numbers)
    head = "<th data-type='num'>#</th>" + "".join(
        f"<th data-type='{'num' if c.numeric else 'text'}'>{escape(c.header)}</th>" for c in cols
    )
    body = []
    for t in record.trials:
        label = str(t.number) + (f" ({t.baseline})" if t.baseline else "")
        cells = [f"<td data-v='{t.number}'><a href='#trial-{t.number}'>{escape(label)}</a></td>"]
        for c in cols:
            value = c.value(t)
            text = escape(c.text(value)) if value not in (None, "") else (NA if c.numeric else "")
            number = f" data-v='{value!r}'" if isinstance(value, int | float) else ""
            cells.append(f"<td{number}>{text}</td>")
        st = escape(status(record, t, front_numbers))
        body.append(f"<tr data-status='{st}' data-n='{t.number}'>{''.join(cells)}</tr>")
    return (
        f"<table id='trials-table' class='sortable'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )

"""One trial in full, for the report's detail view: plan step by step, every measurement,
per-layer MACs before and after, and the command that takes the model out."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from devicefit.results.pareto import compare, float32_baseline
from devicefit.results.records import StudyRecord, TrialRecord
from devicefit.results.speedups import confirmed
from devicefit.results.table import NA, fmt_num, fmt_signed, fmt_speedup, fmt_value
from devicefit.search import attrs

MEASUREMENT_FIELDS = (
    ("median_ms", "median ms"),
    ("raw_median_ms", "own median ms (before pairing)"),
    ("reference_trial", "paired with trial"),
    ("reference_ratio", "ratio to it"),
    ("p90_ms", "p90 ms"),
    ("min_ms", "min ms"),
    ("std_ms", "std ms"),
    ("count", "runs"),
    ("threads", "threads"),
    ("peak_memory_mb", "peak memory MB"),
    ("energy_per_inference_mj", "energy mJ/inference"),
    ("temperature_after_c", "temperature after °C"),
    ("runtime", "runtime"),
    ("device", "pool member"),
)


@dataclass
class LayerMacs:
    layer: str
    before: int | None  # None: a layer the original model did not have
    after: int  # of every candidate layer that replaced it


def original_layer_macs(record: StudyRecord) -> dict[str, int]:
    """Per-layer MACs of the searched model: the float32 trial's, else ``inspect.json``'s.

    Args:
        record: the study.

    Returns:
        Layer name -> MACs; empty when neither source has them.
    """
    base = float32_baseline(record)
    if base is not None and base.stored and base.stored.layer_macs:
        return {k: int(v) for k, v in base.stored.layer_macs.items()}
    path = Path(record.folder) / attrs.INSPECT_FILE
    try:
        layers = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(r["name"]): int(r["macs"]) for r in layers if r.get("macs")}


def layer_macs_table(before: dict[str, int], after: dict[str, int]) -> list[LayerMacs]:
    """Candidate layers attributed to the original layer they came from.

    A rewrite keeps the replaced layer's name on one part and calls the others
    ``<name>_<suffix>`` (``conv1_lowrank``, ``conv1_crop``): the longest original name that
    prefixes a new layer's name owns it. Original layers that disappeared show 0 after.

    Args:
        before: the original model's MACs per layer (``original_layer_macs``).
        after: the candidate's MACs per layer.

    Returns:
        One row per original layer, in its order, then the candidate's layers no original
        name owns (``before`` None).
    """
    rows = {name: LayerMacs(name, macs, 0) for name, macs in before.items()}
    by_length = sorted(before, key=len, reverse=True)
    for name, macs in after.items():
        owner = (
            name if name in rows else next((o for o in by_length if name.startswith(o + "_")), None)
        )
        if owner is None:
            rows[name] = LayerMacs(name, None, 0)
            owner = name
        rows[owner].after += macs
    return list(rows.values())


def export_command(record: StudyRecord, trial: TrialRecord) -> str:
    """The shell command that exports the trial's model, as shown in its detail view.

    Args:
        record: the study, for its folder.
        trial: the trial.

    Returns:
        ``devicefit export FOLDER --trial N --out export/trial-N``, the folder shell-quoted.
    """
    folder = shlex.quote(str(record.folder))
    return f"devicefit export {folder} --trial {trial.number} --out export/trial-{trial.number}"


def detail_html(
    record: StudyRecord, trial: TrialRecord, status: str, before: dict[str, int]
) -> str:
    """A section shown when the page's address ends in ``#trial-<N>`` (CSS :target).

    Args:
        record: the study.
        trial: the trial to show.
        status: its word in the trials table (``pareto.status``).
        before: the original model's MACs per layer, shared by every trial's section.

    Returns:
        The HTML section: summary, failure, plan, technique notes and, for a completed
        trial, its measurements, MACs per layer and the export command.
    """
    parts = [f'<section class="detail" id="trial-{trial.number}">']
    title = f"Trial #{trial.number}: {trial.plan_short or 'original model'}"
    parts.append(f"<h3>{escape(title)} <a href='#trials'>(back to the table)</a></h3>")
    parts.append(f"<p>{escape(_summary(record, trial, status))}</p>")
    if trial.fail_reason:
        why = "Pruned" if trial.state == "PRUNED" else "Failed"
        parts.append(f"<p class='fail'>{why}: {escape(trial.fail_reason)}</p>")
    parts.append("<h4>Plan, step by step</h4>" + _plan_html(trial))
    notes = trial.metrics.get("notes") or []
    if notes:
        parts.append("<h4>What the techniques did</h4><ul>")
        parts += [f"<li>{escape(str(n))}</li>" for n in notes]
        parts.append("</ul>")
    if trial.complete:
        parts.append("<h4>Measurements</h4>" + _measurements_html(record, trial))
        after = trial.stored.layer_macs if trial.stored else {}
        parts.append("<h4>MACs per layer, before and after</h4>")
        parts.append(_layers_html(before, after))
        parts.append("<h4>Take it out</h4>")
        parts.append(f"<pre class='cmd'>{escape(export_command(record, trial))}</pre>")
    parts.append("</section>")
    return "\n".join(parts)


def _summary(record: StudyRecord, trial: TrialRecord, status: str) -> str:
    bits = [f"{trial.state.lower()}, {status}"]
    if trial.baseline:
        bits.append(f"baseline {trial.baseline}")
    if trial.recipe:
        bits.append(f"recipe {trial.recipe}")
    if trial.retry_of is not None:
        bits.append(f"re-run of trial #{trial.retry_of}")
    if trial.complete:
        cmp = compare(record, trial)
        unit = f" {record.metric.unit}" if record.metric.unit else ""
        bits.append(f"{record.metric.name} {fmt_num(trial.metric(record.objectives))}{unit}")
        bits.append(f"{fmt_signed(cmp.metric_change)}{unit} vs {cmp.reference or 'n/a'}")
        for device, stored in cmp.speedup.items():
            paired = confirmed(record, trial.number, device, "float32")
            shown = f"{paired.text()} (paired)" if paired else fmt_speedup(stored)
            bits.append(f"{shown} on {device}")
        if trial.same_as is not None:
            bits.append(f"same file as trial #{trial.same_as}")
    return "; ".join(bits)


def _plan_html(trial: TrialRecord) -> str:
    plan = trial.plan or {}
    steps = plan.get("steps") or []
    if not steps:
        return "<p>No compression steps (the original model).</p>"
    items = []
    for step in steps:
        params = ", ".join(f"{k}={_value(v)}" for k, v in sorted(step.get("params", {}).items()))
        items.append(f"<li><code>{escape(step['technique'])}</code> {escape(params)}</li>")
    epochs = plan.get("finetune_epochs", 0)
    return f"<ol>{''.join(items)}</ol><p>Fine-tuning epochs: {escape(str(epochs))}</p>"


def _value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, dict | list) else str(v)


def _measurements_html(record: StudyRecord, trial: TrialRecord) -> str:
    devices = [o.device for o in record.latency_objectives if o.device]
    head = "".join(f"<th>{escape(label)}</th>" for _, label in MEASUREMENT_FIELDS)
    rows = []
    for dev in devices:
        lat = trial.latency(dev)
        cells = "".join(
            f"<td>{escape(fmt_value(lat.get(key)))}</td>" for key, _ in MEASUREMENT_FIELDS
        )
        rows.append(f"<tr><th>{escape(dev)}</th>{cells}</tr>")
        if lat.get("process_medians_ms"):  # the float32 baseline: the study's anchor
            each = ", ".join(fmt_num(float(ms)) for ms in lat["process_medians_ms"])
            rows.append(
                f"<tr><td></td><td colspan='99'>median over processes: {escape(each)} ms "
                "(the first its own measurement)</td></tr>"
            )
        for key, why in (lat.get("unavailable") or {}).items():
            rows.append(
                f"<tr><td></td><td colspan='99'>{escape(key)}: {escape(str(why))}</td></tr>"
            )
    m = trial.stored
    size = (
        f"size {fmt_value(m and m.size_bytes)} bytes, MACs {fmt_value(m and m.macs)}, "
        f"parameters {fmt_value(m and m.params)}"
    )
    table = (
        f"<table><thead><tr><th>device</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return table + f"<p>{escape(size)}</p>"


def _layers_html(before: dict[str, int], after: dict[str, int]) -> str:
    if not after:
        return "<p>Not recorded for this trial.</p>"
    rows = layer_macs_table(before, after)
    body = []
    for r in rows:
        ratio = f"{r.after / r.before:.2f}×" if r.before else NA
        cls = " class='changed'" if r.before != r.after else ""
        body.append(
            f"<tr{cls}><td>{escape(r.layer)}</td><td>{fmt_value(r.before)}</td>"
            f"<td>{fmt_value(r.after)}</td><td>{ratio}</td></tr>"
        )
    total_b, total_a = sum(before.values()), sum(after.values())
    ratio = f"{total_a / total_b:.2f}×" if total_b else NA
    body.append(
        f"<tr class='total'><th>total</th><th>{fmt_value(total_b)}</th>"
        f"<th>{fmt_value(total_a)}</th><th>{ratio}</th></tr>"
    )
    return (
        "<table class='layers'><thead><tr><th>layer</th><th>MACs before</th><th>MACs after</th>"
        f"<th>after / before</th></tr></thead><tbody>{''.join(body)}</tbody></table>"
    )

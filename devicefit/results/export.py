"""Take one trial's model out of a study, with a model card saying what it is and how it ran."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from devicefit import __version__
from devicefit.errors import UsageError
from devicefit.results._io import copy_atomic, write_atomic
from devicefit.results.pareto import compare, pareto_front
from devicefit.results.records import StudyRecord, TrialRecord
from devicefit.results.report import finite
from devicefit.results.table import fmt_signed, fmt_speedup, fmt_value
from devicefit.search import attrs

MODEL_FILE = "model.tflite"
KERAS_FILE = "model.keras"
CARD_MD = "MODEL_CARD.md"
CARD_JSON = "model_card.json"


def export_trial(record: StudyRecord, trial_number: int, out_dir: Path) -> list[Path]:
    """Copy the trial's TFLite file (and its Keras model, when stored) into ``out_dir`` with
    its card; returns the paths written, the model card last."""
    trial = _exportable(record, trial_number)
    out_dir = _out_folder(out_dir)
    return _export(record, trial, out_dir)


def export_front(record: StudyRecord, out_dir: Path) -> list[Path]:
    """Every Pareto-front member into ``out_dir/trial-<N>/``, plus an index ``README.md``.

    All or nothing: written into a temporary sibling folder, renamed into place at the end;
    ``out_dir`` must not exist or be empty, so no member of an older front is left beside.
    """
    front = pareto_front(record)
    if not front:
        raise UsageError(f"{record.folder}: no feasible completed trial, so no front to export")
    out_dir = _out_folder(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir}: not empty; --pareto writes a whole folder, give a new one")
    for trial in front:  # check every artifact first: nothing is written for a broken study
        _artifact(record, trial)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        written: list[Path] = []
        for trial in front:
            written += _export(record, trial, tmp / f"trial-{trial.number}")
        written.append(write_atomic(tmp / "README.md", _front_index(record, front)))
        if out_dir.is_dir():
            out_dir.rmdir()  # empty, checked above
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out_dir / p.relative_to(tmp) for p in written]


def prune_keras_models(record: StudyRecord) -> int:
    """Delete the Keras models of dominated and infeasible trials (``keep_keras = "front"``).

    Safe at any time: a dominated trial stays dominated (the trial dominating it stays
    in the study) and an infeasible one stays infeasible. Returns how many were deleted.
    """
    front = {t.number for t in pareto_front(record)}
    removed = 0
    for t in record.trials:
        if t.complete and t.number not in front:
            path = Path(record.folder) / attrs.TRIALS_DIR / str(t.number) / KERAS_FILE
            if path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _out_folder(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder")
    return out_dir


def _artifact(record: StudyRecord, trial: TrialRecord) -> Path:
    src = Path(record.folder) / attrs.TRIALS_DIR / str(trial.number) / MODEL_FILE
    if not src.is_file():
        raise UsageError(f"{src}: artifact missing for trial #{trial.number}")
    return src


def _export(record: StudyRecord, trial: TrialRecord, out_dir: Path) -> list[Path]:
    src = _artifact(record, trial)
    keras_src = src.with_name(KERAS_FILE)
    card = model_card(record, trial, src, keras_src if keras_src.is_file() else None)
    # The models first: a card must never describe a file that is not there.
    written = [copy_atomic(src, out_dir / MODEL_FILE)]
    if keras_src.is_file():
        written.append(copy_atomic(keras_src, out_dir / KERAS_FILE))
    else:  # an earlier export's Keras model must not pass for this trial's
        (out_dir / KERAS_FILE).unlink(missing_ok=True)
    return written + [
        write_atomic(out_dir / CARD_MD, card_markdown(card)),
        write_atomic(out_dir / CARD_JSON, json.dumps(finite(card), indent=2, default=str) + "\n"),
    ]


def _front_index(record: StudyRecord, front: list[TrialRecord]) -> str:
    from devicefit.results.table import front_rows

    rows = front_rows(record, front)
    lines = [
        f"# Pareto front of {record.name}",
        "",
        f"{len(front)} models, one folder each (`trial-<N>/`: {MODEL_FILE}, {KERAS_FILE} where "
        f"stored, {CARD_MD}, {CARD_JSON}). Sorted by latency.",
        "",
        "| " + " | ".join(rows.headers) + " |",
        "|" + "---|" * len(rows.headers),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows.rows]
    return "\n".join(lines) + "\n"


def _exportable(record: StudyRecord, number: int) -> TrialRecord:
    trial = record.trial(number)
    if trial is None:
        known = f"0..{max(t.number for t in record.trials)}" if record.trials else "none"
        raise UsageError(
            f"{record.folder}: no trial #{number} in study {record.name!r} (trials: {known})"
        )
    if not trial.complete:
        why = f": {trial.fail_reason}" if trial.fail_reason else ""
        raise UsageError(
            f"{record.folder}: trial #{number} is {trial.state}{why}; "
            "only COMPLETE trials can be exported"
        )
    return trial


def model_card(
    record: StudyRecord, trial: TrialRecord, model_path: Path, keras_path: Path | None = None
) -> dict[str, Any]:
    cmp = compare(record, trial)
    m = trial.metrics
    plan = trial.plan or {"steps": [], "finetune_epochs": 0}
    latency = {}
    for obj in record.latency_objectives:
        device = obj.device or obj.name
        latency[device] = {**trial.latency(device), "speedup_vs_float32": cmp.speedup.get(device)}
    data = model_path.read_bytes()
    return {
        "devicefit_version": __version__,
        # The storage URL is left out on purpose: it may carry database credentials.
        "study": {"name": record.name, "task": record.task, "created_with": record.version},
        "trial": {
            "number": trial.number,
            "baseline": trial.baseline,
            "on_pareto_front": trial.number in {t.number for t in pareto_front(record)},
            "feasible": trial.feasible,
            "started": _iso(trial.datetime_start),
            "completed": _iso(trial.datetime_complete),
        },
        "exported": datetime.now().isoformat(timespec="seconds"),
        "plan": {**plan, "short": trial.plan_short},
        "metric": {
            "name": record.metric.name,
            "unit": record.metric.unit,
            "higher_is_better": record.metric.higher_is_better,
            "value": trial.metric(record.objectives),
            "change_vs_float32": cmp.metric_change,
            "reference": cmp.reference,
            "metric_drop": m.get("metric_drop"),
            "max_metric_drop": record.max_metric_drop,
        },
        "latency": latency,
        "size_bytes": m.get("size_bytes"),
        "macs": m.get("macs"),
        "params": m.get("params"),
        "size_ratio_vs_float32": cmp.size_ratio,
        "macs_ratio_vs_float32": cmp.macs_ratio,
        "devices": {dev: record.devices.get(dev) for dev in latency},
        "notes": list(m.get("notes") or []),
        "model": {
            "file": MODEL_FILE,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
        "keras_model": _keras_info(keras_path),
    }


def _keras_info(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    data = path.read_bytes()
    return {"file": KERAS_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def card_markdown(card: dict[str, Any]) -> str:
    lines = [
        *_summary_lines(card),
        *_plan_lines(card["plan"]),
        *_quality_lines(card["metric"]),
        *_latency_lines(card["latency"]),
        *_size_lines(card),
        *_device_lines(card["devices"]),
        *_note_lines(card["notes"]),
        "",
        "Re-measure with `devicefit benchmark model.tflite --device <device>`.",
        "",
    ]
    return "\n".join(lines)


def _summary_lines(card: dict[str, Any]) -> list[str]:
    """The card's title and its list of what the model is, where from, and which file."""
    t, plan = card["trial"], card["plan"]
    return [
        f"# {card['study']['name']}: trial #{t['number']}",
        "",
        f"- Plan: `{plan.get('short') or 'original model'}`",
        f"- Study: {card['study']['name']} (task {card['study']['task'] or 'n/a'})",
        f"- Trial completed: {t['completed'] or 'n/a'}; exported: {card['exported']}",
        f"- devicefit {card['devicefit_version']}"
        f" (study created with {card['study']['created_with'] or 'n/a'})",
        f"- File: `{card['model']['file']}`, {card['model']['bytes']} bytes, "
        f"sha256 `{card['model']['sha256']}`",
        _keras_line(card.get("keras_model")),
        f"- Baseline: {t['baseline'] or 'no'}; feasible: {t['feasible']}; "
        f"on the Pareto front: {t['on_pareto_front']}",
    ]


def _plan_lines(plan: dict[str, Any]) -> list[str]:
    """The "Plan, step by step" section: each step with its parameters, then fine-tuning."""
    lines = ["", "## Plan, step by step", ""]
    for i, step in enumerate(plan.get("steps") or [], start=1):
        params = ", ".join(f"{k}={v}" for k, v in sorted(step.get("params", {}).items()))
        lines.append(f"{i}. `{step['technique']}`" + (f": {params}" if params else ""))
    if not plan.get("steps"):
        lines.append("(no compression steps)")
    lines.append(f"\nFine-tuning epochs: {plan.get('finetune_epochs', 0)}")
    return lines


def _quality_lines(met: dict[str, Any]) -> list[str]:
    """The "Quality" section: the metric, its change against the reference, and its drop."""
    unit = f" {met['unit']}" if met["unit"] else ""
    return [
        "",
        "## Quality",
        "",
        f"- {met['name']}: {_num(met['value'])}{unit}",
        f"- change vs {met['reference'] or 'float32'}: {_num(met['change_vs_float32'], '+')}{unit}",
        f"- metric drop: {_num(met['metric_drop'])} (allowed: {_num(met['max_metric_drop'])})",
    ]


def _latency_lines(latency: dict[str, Any]) -> list[str]:
    """The "Latency (ms)" section: a table row per device, then each device's other fields."""
    lines = [
        "",
        "## Latency (ms)",
        "",
        "| device | median | p90 | min | std | runs | threads | speedup vs float32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dev, lat in latency.items():
        cells = [lat.get(k) for k in ("median_ms", "p90_ms", "min_ms", "std_ms", "count")]
        lines.append(
            f"| {dev} | "
            + " | ".join(_num(c) for c in cells)
            + f" | {lat.get('threads', 'n/a')} | {fmt_speedup(lat.get('speedup_vs_float32'))} |"
        )
    for dev, lat in latency.items():
        extra = {k: lat.get(k) for k in ("runtime", "peak_memory_mb", "init_ms")}
        extra = {k: v for k, v in extra.items() if v is not None}
        if extra or lat.get("unavailable"):
            parts = [f"{k} {_num(v)}" for k, v in extra.items()]
            parts += [
                f"{k} unavailable ({why})" for k, why in (lat.get("unavailable") or {}).items()
            ]
            lines.append(f"\n{dev}: " + "; ".join(parts))
    return lines


def _size_lines(card: dict[str, Any]) -> list[str]:
    """The "Size and compute" section: bytes, MACs and parameters, against float32."""
    return [
        "",
        "## Size and compute",
        "",
        f"- size: {_num(card['size_bytes'])} bytes "
        f"({_num(card['size_ratio_vs_float32'])}× float32)",
        f"- MACs: {_num(card['macs'])} ({_num(card['macs_ratio_vs_float32'])}× float32)",
        f"- parameters: {_num(card['params'])}",
    ]


def _device_lines(devices: dict[str, Any]) -> list[str]:
    """The "Devices" section: each device's description, as JSON."""
    lines = ["", "## Devices", ""]
    for dev, info in devices.items():
        lines.append(f"- {dev}: {json.dumps(info, sort_keys=True, default=str)}")
    return lines


def _note_lines(notes: list[str]) -> list[str]:
    """The "Notes" section, or nothing when there are no notes."""
    if not notes:
        return []
    return ["", "## Notes", ""] + [f"- {n}" for n in notes]


def _keras_line(info: dict[str, Any] | None) -> str:
    if not info:
        return (
            '- Keras model: not kept (with keep_keras = "front" only front members keep '
            "theirs; studies made before devicefit stored them have none)"
        )
    return (
        f"- Keras model before conversion: `{info['file']}`, {info['bytes']} bytes, "
        f"sha256 `{info['sha256']}`"
    )


def _num(value: Any, sign: str = "") -> str:
    # Same rounding as the report tables, so the card and report.html agree digit for digit.
    if sign and isinstance(value, float):
        return fmt_signed(value)
    return fmt_value(value, "n/a")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")

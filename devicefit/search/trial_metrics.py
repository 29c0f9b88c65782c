"""The record a complete trial stores under its "metrics" user attribute.

search/attrs.py documents the stored layout from this class; the driver writes it with
``to_dict`` and reads earlier trials' with ``from_dict``, and the reports read it as
``TrialRecord.stored`` (results/records.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from devicefit.evaluators.base import Measurement
from devicefit.search.rejection import FINETUNE_KEY


@dataclass
class TrialMetrics:
    """What a trial's candidate scored and how it was measured on each device."""

    metric: float  # the task metric on the test split, through the TFLite file
    metric_drop: float  # from the float32 baseline's, in metric units (positive: worse)
    size_bytes: int  # of the TFLite file
    macs: int
    params: int
    ops: dict[str, int] = field(default_factory=dict)  # TFLite op kind -> count
    layer_macs: dict[str, int] = field(default_factory=dict)  # of the Keras model converted
    latency: dict[str, Measurement] = field(default_factory=dict)  # device name -> its measurement
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    built_on: str | None = None  # the Ray node that ran the trial (None: this machine)
    worker_rss_mb: float | None = None  # the worker's resident memory after the trial
    tflite_sha256: str = ""
    same_as: int | None = None  # the earlier trial whose file this is
    # A file measured before: device -> {"median_ms", "measurements"}, the median over
    # all its measurements (what the trial was told).
    pooled: dict[str, dict[str, Any]] = field(default_factory=dict)
    paused_trials: int | None = None  # trials held paused while this one measured here
    # Fine-tuning on the validation split ({} when the trial did not fine-tune):
    # "drop_before" (its weights techniques applied at once when "one_shot"), "drops"
    # (after each epoch), "drop_after", "recovered" (metric units), "epochs_planned",
    # "epochs", "epochs_run", "macs_removed", "weights", and "epochs_extra",
    # "epochs_extra_run" when a structural change still over the budget got more epochs.
    finetune: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form stored in Optuna and in the trial's metrics.json.

        Returns:
            A dict with one key per field; each measurement is its own dict.
        """
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["latency"] = {name: m.to_dict() for name, m in self.latency.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialMetrics:
        """The record ``to_dict`` gave, read back; keys it does not know are ignored.

        Args:
            data: a stored "metrics" attribute of a complete trial.

        Returns:
            The record; fields missing from ``data`` (older studies) take their defaults.

        Raises:
            KeyError: ``data`` lacks "metric", "metric_drop", "size_bytes", "macs" or
                "params" (it is not a complete trial's record).
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["latency"] = {
            name: Measurement.from_dict(m) for name, m in (data.get("latency") or {}).items()
        }
        for key in ("metric", "metric_drop", "size_bytes", "macs", "params"):
            values[key] = data[key]
        return cls(**values)


def pruned_metrics(
    finetune: dict[str, Any], timings_s: dict[str, float], notes: list[str]
) -> dict[str, Any]:
    """The "metrics" attribute of a trial pruned as hopeless: what it learned, no scores.

    Args:
        finetune: its drops on the validation split (search/rejection.py's keys).
        timings_s: stage -> seconds, up to where it stopped.
        notes: what happened to it.

    Returns:
        The dict stored under "metrics".
    """
    return {FINETUNE_KEY: finetune, "timings_s": timings_s, "notes": notes}

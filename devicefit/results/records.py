"""A study as reports see it: plain records read once from study.json and the Optuna storage.

Reports never touch Optuna objects directly, so every report (terminal, HTML, JSON, CSV,
model card) is built from the same numbers, whichever storage the study lives in.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from devicefit.errors import UsageError
from devicefit.search import attrs
from devicefit.search.trial_metrics import TrialMetrics


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # "maximize" | "minimize"
    unit: str = ""
    device: str | None = None  # set on per-device objectives
    kind: str = "latency"  # of a per-device objective: latency, peak_memory, energy, temperature

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    unit: str = ""

    def label(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name


@dataclass
class TrialRecord:
    number: int
    state: str  # optuna TrialState name: COMPLETE, FAIL, PRUNED, RUNNING, WAITING
    values: dict[str, float]  # objective name -> value; empty unless the trial completed
    plan: dict[str, Any] | None
    plan_short: str
    metrics: dict[str, Any]
    baseline: str | None
    fail_reason: str | None
    feasible: bool
    constraints: dict[str, float] = field(default_factory=dict)
    retry_of: int | None = None
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None
    recipe: str | None = None  # the enqueued one-technique recipe it runs, or "combined"
    profile_plan: str | None = None  # the greedy plan from the profiles it runs
    params: dict[str, Any] = field(default_factory=dict)  # Optuna's sampled parameters
    # Optuna distributions of ``params``, kept for importance evaluation only.
    distributions: dict[str, Any] = field(default_factory=dict)
    same_as: int | None = None  # one candidate with this earlier trial (the same file)
    # device -> {"median_ms", "measurements"}: every measurement of this file pooled
    pooled: dict[str, dict[str, Any]] = field(default_factory=dict)
    # ``metrics`` as the typed record a complete trial stores (search/trial_metrics.py);
    # None for other states (a pruned trial keeps only its notes and drops) and for a
    # record that lacks a field every complete trial stores.
    stored: TrialMetrics | None = None

    @property
    def complete(self) -> bool:
        return self.state == "COMPLETE"

    def metric(self, objectives: list[Objective]) -> float | None:
        """The task metric; the stored metrics win, the first objective value is the fallback."""
        value = self.metrics.get("metric")
        if value is None and objectives:
            value = self.values.get(objectives[0].name)
        return None if value is None else float(value)

    def latency(self, device: str) -> dict[str, Any]:
        """The device's measurement dict (median_ms, p90_ms, ...), {} if not measured."""
        return dict((self.metrics.get("latency") or {}).get(device) or {})

    def latency_median(self, objective: Objective) -> float | None:
        """Median ms on the objective's device: over every measurement of the file when it
        was measured more than once, else this trial's; the objective value if neither."""
        device = objective.device or ""
        pooled = self.pooled.get(device)
        median = pooled["median_ms"] if pooled else self.latency(device).get("median_ms")
        if median is None:
            median = self.values.get(objective.name)
        return None if median is None else float(median)


@dataclass
class StudyRecord:
    name: str
    folder: Path
    storage: str
    objectives: list[Objective]
    metric: MetricInfo
    reference_metric: float | None
    max_metric_drop: float | None
    trials: list[TrialRecord]
    task: str = ""
    devices: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    confirmed: dict[str, Any] = field(default_factory=dict)  # paired rounds (search/confirm.py)
    # What the profiles left out of the space or ended (search/shaped_space.py), and the
    # greedy plans made from them: name -> the units' settings (search/greedy_plan.py).
    shaping: list[dict[str, Any]] = field(default_factory=list)
    profile_plans: dict[str, Any] = field(default_factory=dict)
    # Derived values reports ask for per trial (the float32 trial, the hypervolume): computed
    # once. A record is a snapshot; it is not updated as the study grows.
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def latency_objectives(self) -> list[Objective]:
        return [o for o in self.objectives if o.device is not None and o.kind == "latency"]

    @property
    def running(self) -> bool:
        """Some trial is still running: a driver is (or was, until it died) at work."""
        return any(t.state == "RUNNING" for t in self.trials)

    def trial(self, number: int) -> TrialRecord | None:
        return next((t for t in self.trials if t.number == number), None)


def load_study_record(folder: Path, storage: str | None = None) -> StudyRecord:
    """Read ``folder/study.json`` and the Optuna study it names; ``storage`` overrides its URL."""
    folder = Path(folder)
    info = _read_study_json(folder)
    name = info.get("study_name")
    if not isinstance(name, str) or not name:
        raise UsageError(f"{folder / attrs.STUDY_FILE}: no study_name")
    url = storage or info.get("storage") or _default_storage(folder)
    return study_record(_load_optuna_study(folder, name, url), folder, url, info)


def study_record(
    study: Any, folder: Path, url: str = "", info: dict[str, Any] | None = None
) -> StudyRecord:
    """The record of an Optuna study already open (the driver's own, for its live report)."""
    folder = Path(folder)
    info = info if info is not None else _read_study_json(folder)
    meta = study.user_attrs.get(attrs.STUDY_KEY)
    if not isinstance(meta, dict):
        raise UsageError(f"{folder}: study {study.study_name!r} has no devicefit attributes")
    objectives = _objectives(meta, [d.name.lower() for d in study.directions])
    metric_meta = meta.get("metric") or {}
    metric = MetricInfo(
        name=str(metric_meta.get("name", objectives[0].name)),
        higher_is_better=bool(metric_meta.get("higher_is_better", objectives[0].maximize)),
        unit=str(metric_meta.get("unit", objectives[0].unit)),
    )
    return StudyRecord(
        name=study.study_name,
        folder=folder,
        storage=url,
        objectives=objectives,
        metric=metric,
        reference_metric=_float_or_none(meta.get("reference_metric")),
        max_metric_drop=_float_or_none(meta.get("max_metric_drop")),
        trials=pool_same_files(
            [_trial_record(t, objectives) for t in study.get_trials(deepcopy=False)], objectives
        ),
        task=str(meta.get("task", "")),
        devices=dict(meta.get("devices") or {}),
        version=str(meta.get("version", "")),
        config=dict(info.get("config") or {}),
        created=info.get("created"),
        confirmed=dict(meta.get(attrs.CONFIRMED) or {}),
        shaping=list(meta.get("space_shaping") or []),
        profile_plans=dict(meta.get("profile_plans") or {}),
    )


def _read_study_json(folder: Path) -> dict[str, Any]:
    path = folder / attrs.STUDY_FILE
    if not path.is_file():
        raise UsageError(f"{folder}: not a devicefit results folder (no {attrs.STUDY_FILE})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data


def _default_storage(folder: Path) -> str:
    db = folder.resolve() / attrs.DB_FILE
    # SQLite would silently create an empty database and report "no such study"; say what's wrong.
    if not db.is_file():
        raise UsageError(f"{folder}: study.json names no storage and {attrs.DB_FILE} is missing")
    return f"sqlite:///{db}"


def _load_optuna_study(folder: Path, name: str, url: str) -> Any:
    import optuna

    from devicefit.search.storages import open_storage

    try:
        return optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:
        raise UsageError(f"{folder}: study {name!r} not found in storage {url}") from None
    except Exception as exc:  # storage backends raise their own types (sqlalchemy, grpc, ...)
        raise UsageError(f"{folder}: cannot open storage {url} ({exc})") from None


def _objectives(meta: dict[str, Any], directions: list[str]) -> list[Objective]:
    raw = meta.get("objectives") or []
    if len(raw) != len(directions):
        raise UsageError(
            f"study attributes list {len(raw)} objectives but the study has {len(directions)}"
        )
    out = []
    for i, (item, direction) in enumerate(zip(raw, directions, strict=True)):
        name = str(item.get("name") or f"objective_{i}")
        device = item.get("device")
        if device is None and name.startswith("latency_"):
            device = name[len("latency_") :]
        # Optuna's own directions are what it optimised; the attrs only name and label them.
        kind = str(item.get("kind", "latency"))
        out.append(Objective(name, direction, str(item.get("unit", "")), device, kind))
    return out


def _trial_record(trial: Any, objectives: list[Objective]) -> TrialRecord:
    user = trial.user_attrs
    values: dict[str, float] = {}
    if trial.values is not None:
        values = {o.name: float(v) for o, v in zip(objectives, trial.values, strict=False)}
    # Optuna 5 keeps constraints as system attrs "constraints:<key>" (older: a list under
    # "constraints"); FrozenTrial.constraints merges both. Feasible = every value <= 0, as Optuna.
    constraints = {k: float(v) for k, v in trial.constraints.items()}
    retry = user.get(attrs.RETRY_OF)
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        values=values,
        plan=user.get(attrs.PLAN),
        plan_short=str(user.get(attrs.PLAN_SHORT, "")),
        metrics=dict(user.get(attrs.METRICS) or {}),
        stored=_stored(trial.state.name, user.get(attrs.METRICS)),
        baseline=user.get(attrs.BASELINE),
        # Why it did not complete: its failure, or why it was pruned as hopeless.
        fail_reason=user.get(attrs.FAIL_REASON) or user.get(attrs.PRUNED_REASON),
        feasible=all(v <= 0.0 for v in constraints.values()),
        constraints=constraints,
        retry_of=None if retry is None else int(retry),
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        recipe=user.get(attrs.RECIPE),
        profile_plan=user.get(attrs.PROFILE_PLAN),
        params=dict(trial.params),
        distributions=dict(trial.distributions),
        same_as=user.get(attrs.SAME_AS),
    )


def _stored(state: str, metrics: dict[str, Any] | None) -> TrialMetrics | None:
    """A complete trial's typed record, or None (see ``TrialRecord.stored``)."""
    if state != "COMPLETE" or not metrics:
        return None
    try:
        return TrialMetrics.from_dict(metrics)
    except (KeyError, TypeError):  # written by hand, or by a version that stored less
        return None


def pool_same_files(trials: list[TrialRecord], objectives: list[Objective]) -> list[TrialRecord]:
    """Complete trials whose files are the same bytes are one candidate: the later ones
    are "same as" the first, and each gets the median of every measurement of the file on
    each device (as the driver told the last of them)."""
    groups: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        sha = trial.stored.tflite_sha256 if trial.stored else None
        if trial.complete and sha:
            groups.setdefault(str(sha), []).append(trial)
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda t: t.number)
        for later in members[1:]:
            later.same_as = members[0].number
        for objective in objectives:
            if objective.device is None or objective.kind != "latency":
                continue
            medians = [
                float(m.latency(objective.device)["median_ms"])
                for m in members
                if m.latency(objective.device).get("median_ms") is not None
            ]
            if not medians:
                continue
            pooled = statistics.median(medians)
            for member in members:
                member.pooled[objective.device] = {
                    "median_ms": pooled,
                    "measurements": len(medians),
                }
                member.values[objective.name] = pooled
    return trials


def _float_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value

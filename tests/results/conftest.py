"""Real Optuna studies in SQLite, written the way devicefit/search/attrs.py says a study is stored.

Trials are added with ``create_trial`` (no model is built), with tiny fake artifacts on disk:
these tests exercise the reporting logic, not the pipeline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytest

from devicefit.search import attrs

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_attrs(devices: list[str], max_drop: float = 1.0, reference: float | None = 97.0) -> dict:
    objectives = [{"name": "accuracy", "direction": "maximize", "unit": "%"}]
    objectives += [
        {"name": f"latency_{d}", "direction": "minimize", "unit": "ms", "device": d}
        for d in devices
    ]
    return {
        "task": "digits",
        "metric": {"name": "accuracy", "higher_is_better": True, "unit": "%"},
        "objectives": objectives,
        "max_metric_drop": max_drop,
        "reference_metric": reference,
        "devices": {d: {"kind": "local", "cpu": "test-cpu", "threads": 1} for d in devices},
        "version": "0.1.0",
    }


def plan_for(bits: int, rank: float | None) -> dict[str, Any]:
    steps = []
    if rank is not None:
        steps.append({"technique": "lowrank", "params": {"rank": rank}})
    steps.append({"technique": "quantization", "params": {"bits": bits}})
    return {"steps": steps, "finetune_epochs": 2 if rank is not None else 0}


def short_of(plan: dict[str, Any]) -> str:
    parts = []
    for s in plan["steps"]:
        inner = ",".join(f"{k}={v}" for k, v in sorted(s["params"].items()))
        parts.append(f"{s['technique']}({inner})")
    if plan["finetune_epochs"]:
        parts.append(f"ft{plan['finetune_epochs']}")
    return " + ".join(parts)


def distribution_of(value: Any) -> optuna.distributions.BaseDistribution:
    """Search-space distributions like the real ones: on/off switches and fractions."""
    if isinstance(value, bool):
        return optuna.distributions.CategoricalDistribution([False, True])
    return optuna.distributions.FloatDistribution(0.0, 1.0)


@dataclass
class FakeStudy:
    folder: Path
    devices: list[str]
    study: optuna.Study
    reference: float | None = 97.0
    numbers: list[int] = field(default_factory=list)

    def add(
        self,
        metric: float,
        latency: float | dict[str, float],
        *,
        baseline: str | None = None,
        drop: float | None = None,
        size: int = 40_000,
        macs: int = 2_000_000,
        artifact: bool = True,
        plan: dict[str, Any] | None = None,
        recipe: str | None = None,
        params: dict[str, Any] | None = None,
        layer_macs: dict[str, int] | None = None,
        sha: str | None = None,
    ) -> int:
        """A COMPLETE trial; ``drop`` defaults to reference - metric, as the pipeline computes."""
        lat = latency if isinstance(latency, dict) else {d: latency for d in self.devices}
        if drop is None:
            drop = (self.reference or metric) - metric
        plan = plan or plan_for(32 if baseline == "float32" else 8, None if baseline else 0.5)
        metrics = {
            "metric": metric,
            "metric_drop": drop,
            "size_bytes": size,
            "macs": macs,
            "params": macs // 10,
            "latency": {
                d: {
                    "median_ms": v,
                    "p90_ms": v * 1.1,
                    "min_ms": v * 0.9,
                    "std_ms": v * 0.05,
                    "count": 50,
                    "threads": 1,
                    "peak_memory_mb": None,
                }
                for d, v in lat.items()
            },
            "notes": ["dense_1: rank kept"],
            "timings_s": {"convert": 0.1},
        }
        user = {attrs.PLAN: plan, attrs.PLAN_SHORT: short_of(plan), attrs.METRICS: metrics}
        if baseline:
            user[attrs.BASELINE] = baseline
        if recipe:
            user[attrs.RECIPE] = recipe
        if layer_macs is not None:
            metrics["layer_macs"] = layer_macs
        if sha is not None:  # the file's bytes: trials with one sha are one candidate
            metrics["tflite_sha256"] = sha
        # Feasible when the drop is within the budget: constraint = drop - max_drop <= 0.
        trial = optuna.trial.create_trial(
            values=[metric, *[lat[d] for d in self.devices]],
            user_attrs=user,
            constraints={attrs.CONSTRAINT: drop - self.max_drop},
            params=params or {},
            distributions={k: distribution_of(v) for k, v in (params or {}).items()},
        )
        return self._store(trial, plan, metrics, artifact)

    def fail(self, reason: str = "conversion failed: unsupported op") -> int:
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, user_attrs={attrs.FAIL_REASON: reason}
        )
        return self._store(trial, None, None, False)

    @property
    def max_drop(self) -> float:
        return float(self.study.user_attrs[attrs.STUDY_KEY]["max_metric_drop"])

    def _store(self, trial: Any, plan: Any, metrics: Any, artifact: bool) -> int:
        self.study.add_trial(trial)
        number = self.study.get_trials(deepcopy=False)[-1].number
        self.numbers.append(number)
        if artifact:
            d = self.folder / attrs.TRIALS_DIR / str(number)
            d.mkdir(parents=True)
            (d / "model.tflite").write_bytes(b"TFL3" + bytes([number % 256]) * 64)
            (d / "plan.json").write_text(json.dumps(plan))
            (d / "metrics.json").write_text(json.dumps(metrics))
            (d / "model.keras").write_bytes(b"PK-keras-" + bytes([number % 256]) * 32)
        return number


@pytest.fixture
def make_study(tmp_path: Path):
    """make_study(devices=["local"], name="s1") -> FakeStudy with study.json and study.db."""

    def make(
        devices: list[str] | None = None,
        name: str = "s1",
        reference: float | None = 97.0,
        max_drop: float = 1.0,
    ) -> FakeStudy:
        devices = devices or ["local"]
        folder = tmp_path / "results" / name
        folder.mkdir(parents=True)
        study = optuna.create_study(
            study_name=name,
            storage=f"sqlite:///{folder / attrs.DB_FILE}",
            directions=["maximize"] + ["minimize"] * len(devices),
        )
        study.set_user_attr(attrs.STUDY_KEY, study_attrs(devices, max_drop, reference))
        info = {
            "study_name": name,
            "storage": None,
            "config": {"trials": 10},
            "created": "2025-01-01T00:00:00",
        }
        (folder / attrs.STUDY_FILE).write_text(json.dumps(info))
        return FakeStudy(folder, devices, study, reference)

    return make

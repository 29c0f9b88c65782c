"""The driver: the only process that asks and tells the study.

It keeps ``workers`` trials in flight, measures each finished candidate on the
device while all trial work is paused, writes the trial's artifacts, then tells.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from devicefit.config import StudyConfig
from devicefit.errors import TrialFailed
from devicefit.evaluators.base import BenchmarkSpec, DeviceEvaluator
from devicefit.evaluators.metrics import Metric
from devicefit.search import attrs
from devicefit.search.artifacts import write_folder_atomic
from devicefit.search.executors import Executor
from devicefit.search.progress import SearchProgress
from devicefit.search.study import enqueue_next_fixed, set_study_info, study_info
from devicefit.search.trial import TrialOutput, TrialRequest
from devicefit.spaces.base import Plan
from devicefit.spaces.space import SearchSpace, baseline_plan
from devicefit.tasks.base import TaskSpec


@dataclass
class _InFlight:
    trial: optuna.Trial
    plan: Plan


@dataclass
class Driver:
    study: optuna.Study
    config: StudyConfig
    folder: Path
    space: SearchSpace
    metric: Metric
    task: TaskSpec
    executor: Executor
    evaluator: DeviceEvaluator
    console: Console = field(default_factory=Console)
    in_flight: dict[cf.Future[TrialOutput], _InFlight] = field(default_factory=dict)
    fatal: str | None = None

    def complete(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def run(self) -> int:
        """Run until the study has ``config.trials`` complete trials. Exit code."""
        info = study_info(self.study)
        if info.get("reference_metric") is None:
            self._ensure_reference_trial()
        target = self.config.trials
        failures, max_failures = 0, max(5, target)
        with SearchProgress(self.console, target, self.complete(), info) as progress:
            progress.reference_latency = self._reference_latency()
            try:
                while self.complete() < target:
                    self._fill(target, reference_known=info.get("reference_metric") is not None)
                    done, _ = cf.wait(self.in_flight, return_when=cf.FIRST_COMPLETED)
                    for future in done:
                        ok = self._finish(future, self.in_flight.pop(future), progress)
                        failures += 0 if ok else 1
                        info = study_info(self.study)
                    if self.fatal:
                        self.console.print(f"[red]stopping: {self.fatal}")
                        return 1
                    if failures >= max_failures:
                        self.console.print(
                            f"[red]stopping: {failures} trials failed; see fail_reason in "
                            f"{self.folder}/trials.csv after `devicefit report {self.folder}`"
                        )
                        return 1
            except KeyboardInterrupt:
                self._interrupt()
                self.console.print(f"interrupted; continue with: devicefit resume {self.folder}")
                return 130
            finally:
                self.executor.shutdown(cancel=bool(self.in_flight))
        return 0

    def _ensure_reference_trial(self) -> None:
        """A study whose float32 baseline failed (or never ran) gets it queued again."""
        pending = (TrialState.WAITING, TrialState.RUNNING)
        for trial in self.study.get_trials(deepcopy=False, states=pending):
            if trial.user_attrs.get(attrs.BASELINE) == "float32":
                return
        self.study.enqueue_trial({}, user_attrs={attrs.BASELINE: "float32"})

    def _reference_latency(self) -> float | None:
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if trial.user_attrs.get(attrs.BASELINE) == "float32":
                return float(trial.values[1])
        return None

    def _fill(self, target: int, reference_known: bool) -> None:
        # Until the float32 reference is measured, it runs alone: every other trial's
        # metric-drop constraint is computed against it.
        limit = self.executor.workers if reference_known else 1
        while len(self.in_flight) < limit and self.complete() + len(self.in_flight) < target:
            waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not waiting:
                enqueue_next_fixed(self.study)
            trial = self.study.ask()
            mode = trial.user_attrs.get(attrs.BASELINE)
            plan = baseline_plan(mode) if mode else self.space.sample(trial)
            trial.set_user_attr(attrs.PLAN, plan.to_dict())
            trial.set_user_attr(attrs.PLAN_SHORT, plan.short())
            request = TrialRequest(
                trial.number, plan.to_dict(), self.task, self.config.seed, self.config.threads
            )
            self.in_flight[self.executor.submit(request)] = _InFlight(trial, plan)
            if not reference_known:
                return

    def _finish(self, future: cf.Future[TrialOutput], job: _InFlight, progress: Any) -> bool:
        try:
            out = future.result()
        except Exception as exc:  # noqa: BLE001 - a dead worker process, most often OOM
            return self._fail(job, f"worker process died: {type(exc).__name__}: {exc}", progress)
        if out.error:
            return self._fail(job, out.error, progress)
        spec = BenchmarkSpec(self.config.threads, 5, self.config.min_runs, self.config.min_seconds)
        self.executor.pause()
        try:
            measurement = self.evaluator.measure(out.tflite, spec)
        except TrialFailed as exc:
            return self._fail(job, f"measurement failed: {exc}", progress)
        finally:
            self.executor.resume()
        info = study_info(self.study)
        if info.get("reference_metric") is None and job.trial.user_attrs.get(attrs.BASELINE) == (
            "float32"
        ):
            set_study_info(self.study, reference_metric=out.metric)
            info["reference_metric"] = out.metric
        reference = info.get("reference_metric")
        drop = self.metric.drop(reference, out.metric) if reference is not None else 0.0
        metrics = {
            "metric": out.metric,
            "metric_drop": drop,
            "size_bytes": out.size_bytes,
            "macs": out.macs,
            "params": out.params,
            "ops": out.ops,
            "latency": {self.config.device: measurement.to_dict()},
            "notes": out.notes,
            "timings_s": out.timings_s,
        }
        if not math.isfinite(out.metric):
            return self._fail(job, f"metric is not finite ({out.metric})", progress)
        folder = self.folder / attrs.TRIALS_DIR / str(job.trial.number)
        write_folder_atomic(
            folder,
            {
                "model.tflite": out.tflite,
                "plan.json": _json(job.plan.to_dict()),
                "metrics.json": _json({"trial": job.trial.number, **metrics}),
            },
        )
        job.trial.set_user_attr(attrs.METRICS, metrics)
        job.trial.set_constraint(attrs.CONSTRAINT, drop - float(info["max_metric_drop"]))
        self.study.tell(job.trial, [out.metric, measurement.median_ms])
        progress.trial_done(job.trial.number, job.plan, out.metric, drop, measurement.median_ms)
        return True

    def _fail(self, job: _InFlight, reason: str, progress: Any) -> bool:
        if job.trial.user_attrs.get(attrs.BASELINE) == "float32":
            # Every constraint is measured against this trial: without it, nothing can go on.
            self.fatal = f"the original model (float32 baseline) failed: {reason}"
        job.trial.set_user_attr(attrs.FAIL_REASON, reason)
        self.study.tell(job.trial, state=TrialState.FAIL)
        progress.trial_failed(job.trial.number, job.plan, reason)
        return False

    def _interrupt(self) -> None:
        from devicefit.search.study import recover_interrupted

        self.executor.shutdown(cancel=True)
        self.in_flight.clear()
        recover_interrupted(self.study, "interrupted by the user (Ctrl-C); re-run on resume")


def _json(data: Any) -> bytes:
    import json

    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

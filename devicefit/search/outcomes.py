"""How the driver's trials end: complete with their scores, failed or pruned.

``Outcomes`` tells the study, writes a complete trial's artifacts first, and keeps what
the driver learns from each end: the candidates told (search/same_file.py), what
fine-tuning recovered (search/rejection.py), and the counts the loop stops on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from devicefit.config import StudyConfig
from devicefit.errors import DeviceUnavailable, TrialFailed
from devicefit.evaluators.base import Measurement
from devicefit.evaluators.metrics import Metric
from devicefit.search import attrs
from devicefit.search.artifacts import write_trial_folder
from devicefit.search.measuring import device_limits
from devicefit.search.progress import SearchProgress
from devicefit.search.rejection import Recovery, history_of, learned_from
from devicefit.search.same_file import KnownCandidates
from devicefit.search.scoring import Unscored, score_candidate
from devicefit.search.study import set_study_info, study_info
from devicefit.search.telling import tell_complete, tell_failed, tell_pruned
from devicefit.search.trial import TrialOutput
from devicefit.search.trial_metrics import pruned_metrics
from devicefit.spaces.base import Plan


@dataclass
class Job:
    """A trial asked and the plan it builds."""

    trial: optuna.Trial
    plan: Plan


@dataclass
class Outcomes:
    """Tells the study how each trial ended, and remembers what the search learns."""

    study: optuna.Study
    folder: Path
    config: StudyConfig
    metric: Metric
    known: KnownCandidates = field(default_factory=KnownCandidates)  # files and plans told
    # what each fine-tuning told recovered, after each epoch and at its end
    recoveries: list[Recovery] = field(default_factory=list)
    pruned: int = 0  # trials of the study pruned as hopeless
    told: int = 0  # trials this driver completed or pruned
    fatal: str | None = None  # why the search cannot go on

    def learn(self, trials: list[FrozenTrial]) -> None:
        """Take up what earlier runs of the study told.

        Args:
            trials: every trial of the study.
        """
        self.known = KnownCandidates.from_trials(trials)
        self.recoveries = history_of(trials)
        self.pruned = sum(t.state == TrialState.PRUNED for t in trials)

    def measured(
        self,
        job: Job,
        out: TrialOutput,
        measurements: Callable[[], dict[str, Measurement]],
        progress: SearchProgress,
    ) -> bool:
        """Score a measured candidate, write its artifacts and tell it complete.

        Args:
            job: the trial and its plan.
            out: the built candidate.
            measurements: gives device name -> measurement, or raises why there is none.
            progress: the live view.

        Returns:
            False if the trial failed instead (a device error or a reading missing).
        """
        try:
            measured = measurements()
        except DeviceUnavailable as exc:
            return self.failed(job, f"device unavailable: {exc}", progress)
        except TrialFailed as exc:
            return self.failed(job, f"measurement failed: {exc}", progress)
        info = study_info(self.study)
        if info.get("reference_metric") is None and job.trial.user_attrs.get(attrs.BASELINE) == (
            "float32"
        ):
            set_study_info(self.study, reference_metric=out.metric)
            info["reference_metric"] = out.metric
        limits = device_limits(self.config)
        try:
            scored = score_candidate(out, measured, info, self.metric, limits, self.known.pooled)
        except Unscored as exc:
            return self.failed(job, str(exc), progress)
        metrics, plan, number = scored.metrics.to_dict(), job.plan.to_dict(), job.trial.number
        write_trial_folder(self.folder, number, out.tflite, out.keras_model, plan, metrics)
        tell_complete(self.study, job.trial, scored)
        self.told += 1
        self.known.add(number, plan, metrics)
        recovery = learned_from(out.finetune)
        if recovery is not None:
            self.recoveries.append(recovery)
        progress.trial_done(
            number, job.plan, out.metric, scored.metrics.metric_drop, scored.values[1]
        )
        return True

    def failed(self, job: Job, reason: str, progress: SearchProgress) -> bool:
        """Tell the trial failed; the float32 baseline failing makes the search fatal.

        Args:
            job: the trial and its plan.
            reason: one line saying why.
            progress: the live view.

        Returns:
            False (the trial failed), so callers can count it.
        """
        if job.trial.user_attrs.get(attrs.BASELINE) == "float32":
            # Every constraint is measured against this trial: without it, nothing can go on.
            self.fatal = f"the original model (float32 baseline) failed: {reason}"
        tell_failed(self.study, job.trial, reason)
        progress.trial_failed(job.trial.number, job.plan, reason)
        return False

    def rejected(self, job: Job, out: TrialOutput, progress: SearchProgress) -> bool:
        """Tell a candidate rejected as hopeless PRUNED, with its reason, drops and timings.

        Args:
            job: the trial and its plan.
            out: the candidate, with ``rejected`` set.
            progress: the live view.

        Returns:
            True: a pruned trial is not a failure.
        """
        metrics = pruned_metrics(out.finetune, out.timings_s, out.notes)
        tell_pruned(self.study, job.trial, str(out.rejected), metrics)
        self.pruned += 1
        self.told += 1  # the live report shows it
        progress.trial_pruned(job.trial.number, job.plan, str(out.rejected))
        return True

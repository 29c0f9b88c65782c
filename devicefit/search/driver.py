"""The driver: the only process that asks and tells the study.

It keeps ``workers`` trials in flight and measures each finished candidate on every
device name (search/measuring.py). Devices that share this machine's CPU measure one at
a time while all trial work is paused; remote devices measure in background threads
while the search goes on. Then it scores the candidate (search/scoring.py), writes the
trial's artifacts and tells (search/telling.py).
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from devicefit.config import StudyConfig
from devicefit.evaluators.base import DeviceEvaluator, Measurement
from devicefit.evaluators.metrics import Metric
from devicefit.search import attrs
from devicefit.search.candidates import plan_for, rejection_for, reused
from devicefit.search.executors import Executor
from devicefit.search.extra_epochs import MAX_EXTRA
from devicefit.search.live_report import LiveReporter
from devicefit.search.measuring import Measurer
from devicefit.search.outcomes import Job, Outcomes
from devicefit.search.progress import SearchProgress
from devicefit.search.storage_retries import StorageUnavailable, retrying
from devicefit.search.study import (
    enqueue_next_fixed,
    ensure_reference_trial,
    reference_latency,
    study_info,
)
from devicefit.search.trial import TrialOutput, TrialRequest
from devicefit.spaces.base import Plan
from devicefit.spaces.space import SearchSpace
from devicefit.tasks.base import TaskSpec


@dataclass
class Driver:
    """Runs a study's trials until it has ``config.trials`` complete ones."""

    study: optuna.Study
    config: StudyConfig
    folder: Path
    space: SearchSpace
    metric: Metric
    task: TaskSpec
    executor: Executor
    devices: Mapping[str, DeviceEvaluator]  # name -> pool, in objective order
    console: Console = field(default_factory=Console)
    in_flight: dict[cf.Future[TrialOutput], Job] = field(default_factory=dict)
    measuring: dict[cf.Future[dict[str, Measurement]], tuple[Job, TrialOutput]] = field(
        default_factory=dict
    )
    interrupts: int = 0  # Ctrl-C presses seen
    _asked: optuna.Trial | None = None  # asked, not yet submitted
    _remote: cf.ThreadPoolExecutor | None = None
    budget: float = 0.0  # the study's max_metric_drop, read when the run starts

    def __post_init__(self) -> None:
        self._assemble()

    def _assemble(self) -> None:
        # Made again when a run starts, from the settings the driver holds then.
        self.outcomes = Outcomes(self.study, self.folder, self.config, self.metric)
        self.reporter = LiveReporter(self.study, self.folder, self.config.keep_keras, self.console)
        self.measurer = Measurer(
            self.study,
            self.config,
            self.folder,
            self.devices,
            self.executor,
            self.console,
            before_quiet=self.reporter.finish,
        )

    @property
    def told(self) -> int:
        """Trials this driver completed or pruned."""
        return self.outcomes.told

    def complete(self) -> int:
        """The study's complete trials (this driver's and earlier runs').

        Returns:
            How many there are.
        """
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def run(self) -> int:
        """Run until the study has ``config.trials`` complete trials.

        Returns:
            The exit code: 0 done, 1 stopped (a fatal failure, too many failures or the
            storage unreachable), 130 interrupted by Ctrl-C.
        """
        if threading.current_thread() is not threading.main_thread():
            return self._run()
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            return self._run()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _run(self) -> int:
        self._assemble()
        info = study_info(self.study)
        if info.get("reference_metric") is None:
            ensure_reference_trial(self.study)
        self.outcomes.learn(self.study.get_trials(deepcopy=False))
        self.budget = float(info["max_metric_drop"])  # fixed when the study was created
        with SearchProgress(self.console, self.config.trials, self.complete(), info) as progress:
            progress.reference_latency = reference_latency(self.study)
            try:
                return self._loop(progress, info)
            except StorageUnavailable as exc:
                self.executor.shutdown(cancel=True)
                self.console.print(
                    f"[red]stopping: the storage stayed unreachable ({exc}). Every trial "
                    f"already told is stored; continue with: devicefit resume {self.folder}"
                )
                return 1
            except KeyboardInterrupt:  # a second Ctrl-C: stop now
                self._interrupt()
                self.console.print(f"interrupted; continue with: devicefit resume {self.folder}")
                return 130
            finally:
                self.reporter.finish()
                self.executor.shutdown(cancel=bool(self.in_flight))
                if self._remote is not None:
                    self._remote.shutdown(wait=False, cancel_futures=True)

    def _loop(self, progress: SearchProgress, info: dict[str, Any]) -> int:
        target = self.config.trials
        failures, max_failures = 0, max(5, target)
        while retrying(self.console, self.complete) < target:
            if self.interrupts:
                return self._stop(progress)
            retrying(self.console, self._fill, target, info.get("reference_metric") is not None)
            # A timeout, so a first Ctrl-C is acted on within a second.
            failures += self._step(progress, timeout=1.0)
            self.reporter.update(self.outcomes.told)
            info = retrying(self.console, study_info, self.study)
            if self.outcomes.fatal:
                self.console.print(f"[red]stopping: {self.outcomes.fatal}")
                return 1
            if failures >= max_failures:
                self.console.print(
                    f"[red]stopping: {failures} trials failed; see fail_reason in "
                    f"{self.folder}/trials.csv after `devicefit report {self.folder}`"
                )
                return 1
        return 0

    def _step(self, progress: SearchProgress, timeout: float | None = None) -> int:
        """Wait for the next built or measured candidate and handle it; failures."""
        waiting: list[cf.Future[Any]] = [*self.in_flight, *self.measuring]
        done, _ = cf.wait(waiting, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        failures = 0
        for future in done:
            if future in self.in_flight:
                job = self.in_flight.pop(future)
                ok = retrying(self.console, self._built, future, job, progress)
            else:
                job, out = self.measuring.pop(future)
                ok = retrying(
                    self.console, self.outcomes.measured, job, out, future.result, progress
                )
            failures += 0 if ok else 1
        return failures

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        # The first Ctrl-C only sets a flag (the loop stops asking and lets running
        # trials finish); raising here could cut a tell or an artifact write in half.
        self.interrupts += 1
        if self.interrupts >= 2:
            raise KeyboardInterrupt

    def _stop(self, progress: SearchProgress) -> int:
        """After a first Ctrl-C: running trials finish within the grace period; what is
        still running after it is recorded as interrupted, so resume re-runs it."""
        grace = self.config.grace_seconds
        if self.in_flight or self.measuring:
            self.console.print(
                f"Ctrl-C: no new trials; finishing {len(self.in_flight) + len(self.measuring)} "
                f"running (up to {grace:.0f} s; Ctrl-C again to stop now)"
            )
        deadline = time.monotonic() + grace
        while (self.in_flight or self.measuring) and time.monotonic() < deadline:
            self._step(progress, timeout=min(1.0, max(0.0, deadline - time.monotonic())))
        self._interrupt()
        self.console.print(f"interrupted; continue with: devicefit resume {self.folder}")
        return 130

    def _fill(self, target: int, reference_known: bool) -> None:
        # Until the float32 reference is measured, it runs alone: every other trial's
        # metric-drop constraint is computed against it.
        # (Also while it is measured on a remote device, after its worker is free.)
        if not reference_known and self.measuring:
            return
        limit = self.executor.workers if reference_known else 1
        while len(self.in_flight) < limit and self.complete() + self._busy() < target:
            trial = self._asked
            if trial is None:
                waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                if not waiting:
                    enqueue_next_fixed(self.study)
                # Kept until submitted: if the storage fails below, the retried _fill
                # takes up this trial instead of asking (and stranding) another.
                trial = self._asked = self.study.ask()
            else:
                # The storage failed while this trial was sampled. Read back what it holds:
                # a parameter whose commit went through before the connection dropped is
                # then kept, not drawn again (the storage would ignore the second value,
                # and the plan would not be the one its parameters say).
                trial = self._asked = optuna.Trial(self.study, trial._trial_id)
            plan = plan_for(self.space, trial)
            trial.set_user_attr(attrs.PLAN, plan.to_dict())
            trial.set_user_attr(attrs.PLAN_SHORT, plan.short())
            self.in_flight[self._build(trial, plan)] = Job(trial, plan)
            self._asked = None
            if not reference_known:
                return

    def _busy(self) -> int:
        return len(self.in_flight) + len(self.measuring)

    def _build(self, trial: optuna.Trial, plan: Plan) -> cf.Future[TrialOutput]:
        """The candidate of ``plan``: built by the executor, or, when an earlier trial had
        this plan, that trial's file and scores (nothing is built; it is measured again)."""
        earlier = reused(self.folder, trial.number, plan, self.outcomes.known)
        if earlier is not None:
            return earlier
        request = TrialRequest(
            trial.number,
            plan.to_dict(),
            self.task,
            self.config.seed,
            self.config.threads,
            keep_keras=self.config.keep_keras != "none",
            known_files=frozenset(self.outcomes.known.files),
            max_drop=self.budget,
            max_epochs=int((1 + MAX_EXTRA) * self.space.epochs.high),  # fit() takes whole epochs
            **rejection_for(trial, plan, self.budget, self.outcomes, self.config.trials),
        )
        return self.executor.submit(request)

    def _built(self, future: cf.Future[TrialOutput], job: Job, progress: SearchProgress) -> bool:
        """A candidate is built: measure it (now if a device shares this CPU, else in
        the background). False if the trial failed."""
        try:
            out = future.result()
        except Exception as exc:  # noqa: BLE001 - a dead worker process, most often OOM
            return self.outcomes.failed(
                job, f"worker process died: {type(exc).__name__}: {exc}", progress
            )
        if out.error:
            return self.outcomes.failed(job, out.error, progress)
        if out.rejected:
            return self.outcomes.rejected(job, out, progress)
        self.outcomes.known.take_scores(out)
        if not math.isfinite(out.metric):
            return self.outcomes.failed(job, f"metric is not finite ({out.metric})", progress)
        reference = self.measurer.reference_for(out.tflite)  # the storage is this thread's
        if self.measurer.shares_host_cpu:
            out.paused_trials = len(self.in_flight)  # held while it measures here
            measure = partial(self.measurer.measure, out.tflite, reference)
            return self.outcomes.measured(job, out, measure, progress)
        if self._remote is None:
            self._remote = cf.ThreadPoolExecutor(thread_name_prefix="measure")
        measuring = self._remote.submit(self.measurer.measure, out.tflite, reference)
        self.measuring[measuring] = (job, out)
        return True

    def _interrupt(self) -> None:
        from devicefit.search.study import recover_interrupted

        self.executor.shutdown(cancel=True)
        self.in_flight.clear()
        self.measuring.clear()
        recover_interrupted(self.study, "interrupted by the user (Ctrl-C); re-run on resume")

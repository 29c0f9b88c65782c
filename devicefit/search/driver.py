"""The driver: the only process that asks and tells the study.

It keeps ``workers`` trials in flight and measures each finished candidate on
every device name (a pool member each). Devices that share this machine's CPU
measure one at a time while all trial work is paused; remote devices measure in
background threads while the search goes on. Then it writes the trial's
artifacts and tells.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from devicefit.config import StudyConfig
from devicefit.errors import DeviceUnavailable, TrialFailed
from devicefit.evaluators.base import BenchmarkSpec, DeviceEvaluator, Measurement, RoundsSpec
from devicefit.evaluators.metrics import Metric
from devicefit.search import attrs
from devicefit.search.artifacts import write_folder_atomic
from devicefit.search.executors import Executor
from devicefit.search.extra_epochs import MAX_EXTRA
from devicefit.search.greedy_plan import said_to_sampler
from devicefit.search.progress import SearchProgress
from devicefit.search.reference_speed import (
    ANCHOR,
    FAMILIES,
    Reference,
    References,
    anchored,
    at_reference_speed,
)
from devicefit.search.rejection import (
    FINETUNE_KEY,
    UNRECOVERED_MARGIN,
    Recovery,
    epoch_limits,
    history_of,
    learned_from,
    recoveries_within,
    rejection_limit,
)
from devicefit.search.same_file import KnownCandidates, reuse_output
from devicefit.search.study import FIXED_KEYS, enqueue_next_fixed, set_study_info, study_info
from devicefit.search.trial import TrialOutput, TrialRequest
from devicefit.spaces.base import Plan
from devicefit.spaces.space import SearchSpace, baseline_plan
from devicefit.tasks.base import TaskSpec

REPORT_EVERY = 3  # completed trials between rewrites of the live report.html
# Pruned trials do not count toward the trials asked for; past this many per trial asked,
# candidates are no longer rejected, so a study whose sampler keeps proposing hopeless
# plans still ends.
MAX_PRUNED_PER_TRIAL = 2


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
    devices: dict[str, DeviceEvaluator]  # name -> pool, in objective order
    console: Console = field(default_factory=Console)
    in_flight: dict[cf.Future[TrialOutput], _InFlight] = field(default_factory=dict)
    measuring: dict[cf.Future[dict[str, Measurement]], tuple[_InFlight, TrialOutput]] = field(
        default_factory=dict
    )
    fatal: str | None = None
    interrupts: int = 0  # Ctrl-C presses seen
    _asked: optuna.Trial | None = None  # asked, not yet submitted
    told: int = 0  # trials this driver completed or pruned
    reported: int = 0  # ``told`` when the live report was last written
    _report_at: float = 0.0  # when it was written (monotonic)
    _report_cost: float = 0.0  # how long writing it took
    _reporter: threading.Thread | None = None  # writing it now
    _remote: cf.ThreadPoolExecutor | None = None
    known: KnownCandidates = field(default_factory=KnownCandidates)  # files and plans told
    # what each fine-tuning told recovered, after each epoch and at its end
    # (search/rejection.py)
    recoveries: list[Recovery] = field(default_factory=list)
    references: References | None = None  # files latencies are paired with
    pruned: int = 0  # trials of the study pruned as hopeless (search/rejection.py)

    def complete(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def run(self) -> int:
        """Run until the study has ``config.trials`` complete trials. Exit code."""
        if threading.current_thread() is not threading.main_thread():
            return self._run()
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            return self._run()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _run(self) -> int:
        info = study_info(self.study)
        if info.get("reference_metric") is None:
            self._ensure_reference_trial()
        trials = self.study.get_trials(deepcopy=False)
        self.known = KnownCandidates.from_trials(trials)
        self.recoveries = history_of(trials)
        self.pruned = sum(t.state == TrialState.PRUNED for t in trials)
        self.budget = float(info["max_metric_drop"])  # fixed when the study was created
        target = self.config.trials
        failures, max_failures = 0, max(5, target)
        with SearchProgress(self.console, target, self.complete(), info) as progress:
            progress.reference_latency = self._reference_latency()
            try:
                while self._retrying(self.complete) < target:
                    if self.interrupts:
                        return self._stop(progress)
                    known = info.get("reference_metric") is not None
                    self._retrying(self._fill, target, known)
                    # A timeout, so a first Ctrl-C is acted on within a second.
                    failures += self._step(progress, timeout=1.0)
                    self._live_report()
                    info = self._retrying(study_info, self.study)
                    if self.fatal:
                        self.console.print(f"[red]stopping: {self.fatal}")
                        return 1
                    if failures >= max_failures:
                        self.console.print(
                            f"[red]stopping: {failures} trials failed; see fail_reason in "
                            f"{self.folder}/trials.csv after `devicefit report {self.folder}`"
                        )
                        return 1
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
                self._finish_live_report()
                self.executor.shutdown(cancel=bool(self.in_flight))
                if self._remote is not None:
                    self._remote.shutdown(wait=False, cancel_futures=True)
        return 0

    def _step(self, progress: Any, timeout: float | None = None) -> int:
        """Wait for the next built or measured candidate and handle it; failures."""
        waiting = [*self.in_flight, *self.measuring]
        done, _ = cf.wait(waiting, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        failures = 0
        for future in done:
            if future in self.in_flight:
                job = self.in_flight.pop(future)
                ok = self._retrying(self._built, future, job, progress)
            else:
                job, out = self.measuring.pop(future)
                ok = self._retrying(self._measured, future, job, out, progress)
            failures += 0 if ok else 1
        return failures

    def _live_report(self) -> None:
        """Rewrite report.html every few completed trials, so it can be watched while the
        search runs. A report that cannot be written never stops the search.

        The page is rendered in a background thread (a large study's takes seconds), at
        most once per ten times its last rendering time, and never two at once."""
        if self.told == self.reported:
            return
        if self._reporter is not None and self._reporter.is_alive():
            return
        if self.reported and (
            self.told - self.reported < REPORT_EVERY
            or time.monotonic() - self._report_at < 10 * self._report_cost
        ):
            return
        self.reported = self.told
        from devicefit.results.records import study_record

        try:
            # The driver's own study: no second connection to the storage.
            record = study_record(self.study, self.folder)
        except Exception as exc:  # noqa: BLE001 - the report is a view; the study goes on
            self._report_failed(exc)
            return
        self._reporter = threading.Thread(
            target=self._write_live_report, args=(record,), name="live-report", daemon=True
        )
        self._reporter.start()

    def _write_live_report(self, record: Any) -> None:
        from devicefit.results.export import prune_keras_models
        from devicefit.results.report import write_report

        clock = time.monotonic()
        try:
            write_report(record, self.folder, live=True)
            if self.config.keep_keras == "front":
                prune_keras_models(record)
        except Exception as exc:  # noqa: BLE001
            self._report_failed(exc)
        self._report_at = time.monotonic()
        self._report_cost = self._report_at - clock

    def _report_failed(self, exc: Exception) -> None:
        # markup=False: an exception's text may hold "[...]", which rich would parse.
        self.console.print(
            f"live report not written: {type(exc).__name__}: {exc}", style="yellow", markup=False
        )

    def _finish_live_report(self) -> None:
        """Let a live report being written finish, so it never overwrites the final one."""
        if self._reporter is not None:
            self._reporter.join(timeout=300)

    def _retrying(self, step: Any, *args: Any) -> Any:
        """``step(*args)``, retried with back-off while the storage is unreachable; after
        the last try StorageUnavailable (the driver then stops cleanly). Steps are
        safe to repeat: attributes are set again, artifacts rewritten whole, and a
        tell comes last."""
        delay = 1.0
        for attempt in range(STORAGE_RETRIES + 1):
            try:
                return step(*args)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                if attempt == STORAGE_RETRIES:
                    raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from None
                self.console.print(
                    f"[yellow]storage unreachable ({type(exc).__name__}); retry "
                    f"{attempt + 1}/{STORAGE_RETRIES} in {delay:.0f} s"
                )
                time.sleep(delay)
                delay = min(2 * delay, 30.0)
        raise AssertionError("unreachable")

    def _on_sigint(self, signum: int, frame: Any) -> None:
        # The first Ctrl-C only sets a flag (the loop stops asking and lets running
        # trials finish); raising here could cut a tell or an artifact write in half.
        self.interrupts += 1
        if self.interrupts >= 2:
            raise KeyboardInterrupt

    def _stop(self, progress: Any) -> int:
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
        # (Also while it is measured on a remote device, after its worker is free.)
        if not reference_known and self.measuring:
            return
        limit = self.executor.workers if reference_known else 1
        busy = lambda: len(self.in_flight) + len(self.measuring)  # noqa: E731
        while len(self.in_flight) < limit and self.complete() + busy() < target:
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
            plan = self._plan(trial)
            trial.set_user_attr(attrs.PLAN, plan.to_dict())
            trial.set_user_attr(attrs.PLAN_SHORT, plan.short())
            self.in_flight[self._build(trial, plan)] = _InFlight(trial, plan)
            self._asked = None
            if not reference_known:
                return

    def _plan(self, trial: optuna.Trial) -> Plan:
        """A baseline's plan, a profile plan as it was made, or the sampler's draw."""
        mode = trial.user_attrs.get(attrs.BASELINE)
        if mode:
            return baseline_plan(mode)
        if attrs.PROFILE_PLAN in trial.user_attrs and attrs.PLAN in trial.user_attrs:
            plan = Plan.from_dict(trial.user_attrs[attrs.PLAN])
            if said_to_sampler(self.space, plan):  # enqueued with them: the sampler sees them
                self.space.sample(trial, leave_out=False)
            return plan
        # Recipes are the obvious settings, on every unit; the sampler's trials leave out
        # what the profiles did.
        return self.space.sample(trial, leave_out=attrs.RECIPE not in trial.user_attrs)

    def _build(self, trial: optuna.Trial, plan: Plan) -> cf.Future[TrialOutput]:
        """The candidate of ``plan``: built by the executor, or, when an earlier trial had
        this plan, that trial's file and scores (nothing is built; it is measured again)."""
        earlier = self.known.same_plan(plan.to_dict())
        if earlier is not None:
            reused = reuse_output(self.folder, trial.number, earlier, self.known)
            if reused is not None:
                done: cf.Future[TrialOutput] = cf.Future()
                done.set_result(reused)
                return done
        request = TrialRequest(
            trial.number,
            plan.to_dict(),
            self.task,
            self.config.seed,
            self.config.threads,
            keep_keras=self.config.keep_keras != "none",
            known_files=frozenset(self.known.files),
            max_drop=self.budget,
            max_epochs=int((1 + MAX_EXTRA) * self.space.epochs.high),  # fit() takes whole epochs
            **self._rejection(trial, plan),
        )
        return self.executor.submit(request)

    def _rejection(self, trial: optuna.Trial, plan: Plan) -> dict[str, Any]:
        """The limits beyond which a sampled trial is pruned (TrialRequest's ``reject_*``):
        its drop before fine-tuning, after each epoch but the last, or without fine-tuning.
        None for the fixed trials (baselines, recipes, profile plans): they are the
        references."""
        if any(key in trial.user_attrs for key in FIXED_KEYS):
            return {}
        if self.pruned >= MAX_PRUNED_PER_TRIAL * self.config.trials:
            return {}  # the sampler keeps proposing hopeless plans: let the study end
        return {
            "reject_drop": rejection_limit(
                self.budget, recoveries_within(self.recoveries, plan.finetune_epochs)
            ),
            "reject_after_epoch": epoch_limits(self.budget, self.recoveries, plan.finetune_epochs),
            # With no loss allowed, a validation drop of one sample may still test within it.
            "reject_unrecovered": UNRECOVERED_MARGIN * self.budget if self.budget > 0 else None,
        }

    def _built(self, future: cf.Future[TrialOutput], job: _InFlight, progress: Any) -> bool:
        """A candidate is built: measure it (now if a device shares this CPU, else in
        the background). False if the trial failed."""
        try:
            out = future.result()
        except Exception as exc:  # noqa: BLE001 - a dead worker process, most often OOM
            return self._fail(job, f"worker process died: {type(exc).__name__}: {exc}", progress)
        if out.error:
            return self._fail(job, out.error, progress)
        if out.rejected:
            return self._prune(job, out, progress)
        earlier = self.known.files.get(out.tflite_sha256)
        if out.same_as is None and earlier is not None:
            # Converted to a file an earlier trial made and scored: not scored here
            # (known_file), or scored while that trial was still in flight.
            self.known.fill_scores(out, earlier)
            out.notes.append(f"same file as trial #{earlier}: its scores, measured again")
        if not math.isfinite(out.metric):
            return self._fail(job, f"metric is not finite ({out.metric})", progress)
        if any(d.shares_host_cpu for d in self.devices.values()):
            done: cf.Future[dict[str, Measurement]] = cf.Future()
            out.paused_trials = len(self.in_flight)  # held while it measures here
            try:
                done.set_result(self._measure(out.tflite, self._reference_for(out.tflite)))
            except (TrialFailed, DeviceUnavailable) as exc:
                done.set_exception(exc)
            return self._measured(done, job, out, progress)
        if self._remote is None:
            self._remote = cf.ThreadPoolExecutor(thread_name_prefix="measure")
        reference = self._reference_for(out.tflite)  # read here: the storage is this thread's
        self.measuring[self._remote.submit(self._measure, out.tflite, reference)] = (job, out)
        return True

    def _measure(self, tflite: bytes, reference: Reference | str) -> dict[str, Measurement]:
        """One measurement per device name, at ``reference``'s speed (a reason: its own).
        Devices on this machine go one at a time with trial work paused; remote ones
        measure meanwhile, in parallel."""
        spec = measurement_spec(self.config)
        here = {n: d for n, d in self.devices.items() if d.shares_host_cpu}
        remote = {n: d for n, d in self.devices.items() if not d.shares_host_cpu}
        rounds = RoundsSpec(threads=self.config.threads, rounds=self.config.paired_rounds)

        def measure_on(name: str, device: DeviceEvaluator) -> Measurement:
            measured = device.measure(tflite, spec)
            if reference == ANCHOR:
                return anchored(device, tflite, measured, rounds)
            if isinstance(reference, str):  # why it keeps its own median
                measured.unavailable["reference_ratio"] = reference
                return measured
            return at_reference_speed(device, name, tflite, measured, reference, rounds)

        results: dict[str, Measurement] = {}
        with cf.ThreadPoolExecutor(max(1, len(remote))) as threads:
            futures = {n: threads.submit(measure_on, n, d) for n, d in remote.items()}
            if here:
                # A quiet host: nothing of the search's own runs meanwhile. Trial work is
                # paused, and the live report (rendered in a thread of this process) is
                # let finish first and not started again until the measurement is over;
                # artifacts and storage writes come after it, in this thread.
                self._finish_live_report()
                self.executor.pause()
                try:
                    for name, device in here.items():
                        results[name] = measure_on(name, device)
                finally:
                    self.executor.resume()
            for name, pending in futures.items():
                results[name] = pending.result()
        return {name: results[name] for name in self.devices}

    def _reference_for(self, tflite: bytes) -> Reference | str:
        """The file ``tflite`` is paired with, or why it is not (search/reference_speed.py)."""
        if self.references is None:
            self.references = References(self.folder)
        known = self.references
        if len(known.known or {}) < len(FAMILIES) and not known.unpaired:
            known.learn(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            if known.unpaired:
                self.console.print(f"[yellow]latencies are not paired: {known.unpaired}")
        return known.for_file(tflite)

    def _measured(
        self,
        future: cf.Future[dict[str, Measurement]],
        job: _InFlight,
        out: TrialOutput,
        progress: Any,
    ) -> bool:
        try:
            measurements = future.result()
        except DeviceUnavailable as exc:
            return self._fail(job, f"device unavailable: {exc}", progress)
        except TrialFailed as exc:
            return self._fail(job, f"measurement failed: {exc}", progress)
        info = study_info(self.study)
        if info.get("reference_metric") is None and job.trial.user_attrs.get(attrs.BASELINE) == (
            "float32"
        ):
            set_study_info(self.study, reference_metric=out.metric)
            info["reference_metric"] = out.metric
        reference = info.get("reference_metric")
        drop = self.metric.drop(reference, out.metric) if reference is not None else 0.0
        values = [out.metric]
        pooled: dict[str, dict[str, Any]] = {}
        for objective in info["objectives"][1:]:
            device = objective.get("device") or next(iter(self.devices))
            m, key = measurements[device], objective.get("field", "median_ms")
            value = getattr(m, key)
            if value is None:
                why = m.unavailable.get(key, "not reported")
                return self._fail(job, f"{m.device} gave no {objective['name']}: {why}", progress)
            if out.same_as is not None and key == "median_ms":
                # The same file measured again: told the median over all its measurements.
                value, count = self.known.pooled(out.tflite_sha256, device, float(value))
                pooled[device] = {"median_ms": value, "measurements": count}
            values.append(float(value))
        limits = {}
        for key, limit in device_limits(self.config).items():
            readings = [getattr(m, key) for m in measurements.values()]
            if any(r is None for r in readings):  # a limit nobody can check is not met
                missing = [m.device for m in measurements.values() if getattr(m, key) is None]
                return self._fail(job, f"{', '.join(map(str, missing))} gave no {key}", progress)
            limits[key] = max(readings) - limit
        metrics = {
            "metric": out.metric,
            "metric_drop": drop,
            "size_bytes": out.size_bytes,
            "macs": out.macs,
            "params": out.params,
            "ops": out.ops,
            "layer_macs": out.layer_macs,
            "latency": {name: m.to_dict() for name, m in measurements.items()},
            "notes": out.notes,
            "timings_s": out.timings_s,
            "built_on": out.node,  # the Ray node that ran the trial (None: this machine)
            "worker_rss_mb": out.worker_rss_mb,
            "tflite_sha256": out.tflite_sha256,
            "same_as": out.same_as,
            "pooled": pooled,
            "paused_trials": out.paused_trials,
            FINETUNE_KEY: out.finetune,
        }
        folder = self.folder / attrs.TRIALS_DIR / str(job.trial.number)
        files = {"model.keras": out.keras_model} if out.keras_model else {}
        write_folder_atomic(
            folder,
            {
                **files,
                "model.tflite": out.tflite,
                "plan.json": _json(job.plan.to_dict()),
                "metrics.json": _json({"trial": job.trial.number, **metrics}),
            },
        )
        try:
            job.trial.set_user_attr(attrs.METRICS, metrics)
            if out.same_as is not None:
                job.trial.set_user_attr(attrs.SAME_AS, out.same_as)
            job.trial.set_constraint(attrs.CONSTRAINT, drop - float(info["max_metric_drop"]))
            for key, excess in limits.items():
                job.trial.set_constraint(key, excess)
            self.study.tell(job.trial, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            if self._finished_state(job) != TrialState.COMPLETE:
                raise
        self.told += 1
        self.known.add(job.trial.number, job.plan.to_dict(), metrics)
        recovery = learned_from(out.finetune)
        if recovery is not None:
            self.recoveries.append(recovery)
        progress.trial_done(job.trial.number, job.plan, out.metric, drop, values[1])
        return True

    def _fail(self, job: _InFlight, reason: str, progress: Any) -> bool:
        if job.trial.user_attrs.get(attrs.BASELINE) == "float32":
            # Every constraint is measured against this trial: without it, nothing can go on.
            self.fatal = f"the original model (float32 baseline) failed: {reason}"
        try:
            job.trial.set_user_attr(attrs.FAIL_REASON, reason)
            self.study.tell(job.trial, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            if self._finished_state(job) is None:
                raise
        progress.trial_failed(job.trial.number, job.plan, reason)
        return False

    def _prune(self, job: _InFlight, out: TrialOutput, progress: Any) -> bool:
        """A candidate rejected before fine-tuning: told PRUNED (Optuna's state for a trial
        stopped early on purpose) with its reason, drops and timings; not a failure."""
        try:
            job.trial.set_user_attr(attrs.PRUNED_REASON, out.rejected)
            job.trial.set_user_attr(
                attrs.METRICS,
                {FINETUNE_KEY: out.finetune, "timings_s": out.timings_s, "notes": out.notes},
            )
            self.study.tell(job.trial, state=TrialState.PRUNED)
        except optuna.exceptions.UpdateFinishedTrialError:
            if self._finished_state(job) is None:
                raise
        self.pruned += 1
        self.told += 1  # the live report shows it
        progress.trial_pruned(job.trial.number, job.plan, str(out.rejected))
        return True

    def _finished_state(self, job: _InFlight) -> TrialState | None:
        """The stored state of a trial found finished when this step was retried.

        A tell can reach the storage and commit while the connection drops before the
        answer comes back: the retried step then finds its trial already told. That is
        success, not an error; anything else finishing the trial is for the caller."""
        for trial in self.study.get_trials(deepcopy=False):
            if trial.number == job.trial.number:
                return trial.state if trial.state.is_finished() else None
        return None

    def _interrupt(self) -> None:
        from devicefit.search.study import recover_interrupted

        self.executor.shutdown(cancel=True)
        self.in_flight.clear()
        self.measuring.clear()
        recover_interrupted(self.study, "interrupted by the user (Ctrl-C); re-run on resume")


STORAGE_RETRIES = 6  # back-off 1, 2, 4, 8, 16, 30 s: about a minute of outage


class StorageUnavailable(Exception):
    """The study's storage did not answer through all retries."""


def storage_errors() -> tuple[type[BaseException], ...]:
    """What a storage raises when it cannot be reached (not when a query is wrong)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from sqlalchemy import exc

        errors += [exc.OperationalError, exc.InterfaceError]
    except ImportError:
        pass
    return tuple(errors)


def _lost_connection(exc: BaseException) -> bool:
    # SQLAlchemy marks any database error it recognised as a dropped connection (psycopg
    # reports some as a plain DatabaseError, e.g. "SSL SYSCALL error: EOF detected").
    return bool(getattr(exc, "connection_invalidated", False))


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it: Optuna wraps failed commits) is the storage
    being unreachable."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, storage_errors()) or _lost_connection(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def measurement_spec(config: StudyConfig) -> BenchmarkSpec:
    """How a trial's own measurement is timed, from the study's settings."""
    return BenchmarkSpec(
        config.threads,
        5,
        config.min_runs,
        config.min_seconds,
        max_seconds=config.max_seconds,
        cooldown_c=config.cooldown_c,
        cooldown_timeout_s=config.cooldown_timeout_s,
    )


def device_limits(config: StudyConfig) -> dict[str, float]:
    """Measurement field -> the most any device may show (the study's device constraints)."""
    limits = {
        "peak_memory_mb": config.max_peak_memory_mb,
        "energy_per_inference_mj": config.max_energy_mj,
        "temperature_after_c": config.max_temperature_c,
    }
    return {k: float(v) for k, v in limits.items() if v is not None}


def _json(data: Any) -> bytes:
    import json

    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

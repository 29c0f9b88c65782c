"""The driver with a remote device: measurements run while the search goes on, except
the float32 baseline's, which every constraint needs first.

The executor and the device are test doubles (instant candidates, a device that
takes 0.3 s): what is tested is the driver's scheduling beside them. Real agents
and real searches are in tests/test_devices_end_to_end.py.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from rich.console import Console

from devicefit.config import StudyConfig
from devicefit.errors import DeviceUnavailable
from devicefit.evaluators.base import (
    BenchmarkSpec,
    DeviceEvaluator,
    Measurement,
    Rounds,
    RoundsSpec,
)
from devicefit.evaluators.metrics import get_metric
from devicefit.evaluators.tflite_stats import _schema
from devicefit.search import attrs
from devicefit.search.driver import Driver
from devicefit.search.executors import Executor
from devicefit.search.run import build_space
from devicefit.search.study import create_study
from devicefit.search.trial import TrialOutput, TrialRequest
from devicefit.tasks.base import TaskSpec


class InstantExecutor(Executor):
    def __init__(self) -> None:
        self.workers = 1
        self.submitted: list[tuple[int, float]] = []

    def submit(self, request: TrialRequest) -> cf.Future[TrialOutput]:
        self.submitted.append((request.number, time.monotonic()))
        future: cf.Future[TrialOutput] = cf.Future()
        future.set_result(TrialOutput(request.number, tflite=b"1234TFL3", metric=90.0))
        return future

    def shutdown(self, cancel: bool = False) -> None:
        pass


class SlowRemoteDevice(DeviceEvaluator):
    shares_host_cpu = False

    def __init__(self, fail_after: int | None = None) -> None:
        self.name = "pi@remote"
        self.spans: list[tuple[float, float]] = []
        self.fail_after = fail_after
        self.calls = 0
        self.rounds: list[int] = []
        self._lock = threading.Lock()

    def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
        with self._lock:
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise DeviceUnavailable("pi@remote: unplugged")
        began = time.monotonic()
        time.sleep(0.3)
        self.spans.append((began, time.monotonic()))
        return Measurement(
            median_ms=2.0,
            p90_ms=2.5,
            min_ms=1.5,
            std_ms=0.1,
            count=50,
            threads=1,
            peak_memory_mb=40.0,
            device=self.name,
        )

    def measure_rounds(self, files: list[bytes], spec: RoundsSpec) -> Rounds:
        """Paired with the reference file (search/reference_speed.py): as fast as it."""
        with self._lock:
            self.rounds.append(spec.rounds)
        return Rounds([[2.0] * spec.rounds for _ in files], spec.threads, device=self.name)


def _driver(tmp_path: Path, device: DeviceEvaluator, trials: int) -> tuple[Driver, Executor]:
    # A real search's driver has TensorFlow loaded (its task) before the first candidate's
    # kernel family is read from the file (search/reference_speed.py); here that import
    # would land inside the timed scheduling, seconds long on a busy host.
    _schema()
    config = StudyConfig(
        task="digits",
        trials=trials,
        devices=("pi=http://10.9.9.9:8765",),
        techniques=("quantization",),
    )
    folder = tmp_path / "study"
    metric = get_metric("accuracy")
    study = create_study(config, folder, metric, 1.0, "digits", [], None)
    executor = InstantExecutor()
    driver = Driver(
        study,
        config,
        folder,
        build_space(config),
        metric,
        TaskSpec("digits"),
        executor,
        {"pi": device},
        Console(file=io.StringIO()),
    )
    return driver, executor


def test_remote_measurements_overlap_the_search_but_not_the_baseline(tmp_path: Path) -> None:
    device = SlowRemoteDevice()
    driver, executor = _driver(tmp_path, device, trials=5)
    assert driver.run() == 0
    complete = driver.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 5
    assert all(t.values == [90.0, 2.0] for t in complete)
    # the float32 baseline (the anchor) timed alone in 6 more processes, then every later
    # trial paired with it, 24 rounds in 6 processes
    assert device.rounds == [4] * 6 * 5
    anchor = min(complete, key=lambda t: t.number).user_attrs[attrs.METRICS]["latency"]["pi"]
    assert len(anchor["process_medians_ms"]) == 7
    paired = sorted(complete, key=lambda t: t.number)[1:]
    assert all(t.user_attrs[attrs.METRICS]["latency"]["pi"]["reference_trial"] == 0 for t in paired)
    baseline_end = device.spans[0][1]
    submits = [at for _, at in executor.submitted]
    # Nothing else started before the float32 baseline was measured ...
    assert submits[0] < baseline_end <= submits[1]
    # ... and afterwards new candidates were built while others were on the device.
    overlapping = [
        at for at in submits[1:] if any(start < at < end for start, end in device.spans[1:])
    ]
    assert overlapping


def test_the_study_s_timing_settings_reach_the_device(tmp_path: Path) -> None:
    class Recording(SlowRemoteDevice):
        specs: list[BenchmarkSpec] = []

        def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
            self.specs.append(spec)
            return super().measure(tflite, spec)

    device = Recording()
    driver, _ = _driver(tmp_path, device, trials=2)
    driver.config = replace(driver.config, min_runs=7, min_seconds=0.2, max_seconds=3.0)
    assert driver.run() == 0
    assert {(s.min_runs, s.min_seconds, s.max_seconds, s.target_ci) for s in device.specs} == {
        (7, 0.2, 3.0, 0.02)
    }


def test_an_unavailable_device_fails_the_trial_as_device_unavailable(tmp_path: Path) -> None:
    driver, _ = _driver(tmp_path, SlowRemoteDevice(fail_after=2), trials=4)
    assert driver.run() == 1  # too many failures: the device is gone for good
    failed = driver.study.get_trials(states=(TrialState.FAIL,))
    assert failed
    assert all(
        t.user_attrs[attrs.FAIL_REASON].startswith("device unavailable: pi@remote: unplugged")
        for t in failed
    )
    assert not any((driver.folder / attrs.TRIALS_DIR / str(t.number)).exists() for t in failed)


class SlowExecutor(InstantExecutor):
    """Candidates that take ``seconds`` to build, in a background thread."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.workers = 2

    def submit(self, request: TrialRequest) -> cf.Future[TrialOutput]:
        self.submitted.append((request.number, time.monotonic()))
        future: cf.Future[TrialOutput] = cf.Future()

        def build() -> None:
            time.sleep(self.seconds)
            future.set_result(TrialOutput(request.number, tflite=b"1234TFL3", metric=90.0))

        threading.Thread(target=build, daemon=True).start()
        return future


def _interrupt_after(seconds: float, times: int = 1) -> threading.Timer:
    import os
    import signal

    def press() -> None:
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)

    timer = threading.Timer(seconds, press)
    timer.start()
    return timer


def test_a_file_scored_while_its_twin_was_in_flight_is_still_one_candidate(
    tmp_path: Path,
) -> None:
    """Workers that score a file anyway (its twin still in flight when they were handed
    the trial, so nobody told them it is known): every trial told after the first with
    those bytes is "same as" it, with its scores."""

    class SameBytes(SlowExecutor):
        def submit(self, request: TrialRequest) -> cf.Future[TrialOutput]:
            built = super().submit(request)
            future: cf.Future[TrialOutput] = cf.Future()

            def same(done: cf.Future[TrialOutput]) -> None:
                out = done.result()
                out.tflite_sha256, out.metric = "f" * 64, 90.0 + request.number  # scored anew
                future.set_result(out)

            built.add_done_callback(same)
            return future

    driver, _ = _driver(tmp_path, SlowRemoteDevice(), trials=4)
    driver.executor = SameBytes(seconds=0.2)
    assert driver.run() == 0
    complete = sorted(
        driver.study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number
    )
    assert len(complete) == 4
    first = complete[0]  # the float32 baseline: told before anything else is built
    assert attrs.SAME_AS not in first.user_attrs
    for trial in complete[1:]:
        assert trial.user_attrs[attrs.SAME_AS] == first.number
        assert trial.values[0] == first.values[0]  # the first file's metric, not its own


def _interrupt_when(ready: Any, timeout_s: float = 30.0) -> threading.Thread:
    import os
    import signal

    def press() -> None:
        deadline = time.monotonic() + timeout_s
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    return thread


def test_first_ctrl_c_lets_running_trials_finish(tmp_path: Path) -> None:
    driver, _ = _driver(tmp_path, SlowRemoteDevice(), trials=20)
    driver.executor = executor = SlowExecutor(seconds=1.0)
    # Pressed once the baseline is in and two candidates are being built (whenever that is,
    # on a loaded machine): both must still be finished, measured and told.
    _interrupt_when(lambda: len(executor.submitted) >= 3)
    began = time.monotonic()
    assert driver.run() == 130
    assert time.monotonic() - began < 10
    trials = driver.study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.FAIL)]
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) >= 2


def test_second_ctrl_c_stops_now_and_resume_will_rerun(tmp_path: Path) -> None:
    driver, _ = _driver(tmp_path, SlowRemoteDevice(), trials=20)
    driver.executor = SlowExecutor(seconds=30.0)
    _interrupt_after(0.5, times=2)
    began = time.monotonic()
    assert driver.run() == 130
    assert time.monotonic() - began < 10  # did not wait 30 s for the build
    trials = driver.study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "Ctrl-C" in failed[0].user_attrs[attrs.FAIL_REASON]
    rerun = [t for t in trials if t.state == TrialState.WAITING]
    assert [t.user_attrs[attrs.RETRY_OF] for t in rerun] == [failed[0].number]

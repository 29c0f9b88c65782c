"""Measuring a built candidate on every device of the study.

Devices that share this machine's CPU measure one at a time while all trial work is
paused; remote devices measure meanwhile, in parallel. Each latency is then put at the
speed of the file it is paired with (search/reference_speed.py).
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console

from devicefit.config import StudyConfig
from devicefit.evaluators.base import BenchmarkSpec, DeviceEvaluator, Measurement, RoundsSpec
from devicefit.search.executors import Executor
from devicefit.search.reference_speed import (
    ANCHOR,
    FAMILIES,
    Reference,
    References,
    anchored,
    at_reference_speed,
)


def measurement_spec(config: StudyConfig) -> BenchmarkSpec:
    """How a trial's own measurement is timed.

    Args:
        config: the study's settings.

    Returns:
        The spec every device measures a trial's file with.
    """
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
    """The study's device constraints.

    Args:
        config: the study's settings.

    Returns:
        Measurement field -> the most any device may show; only the limits set.
    """
    limits = {
        "peak_memory_mb": config.max_peak_memory_mb,
        "energy_per_inference_mj": config.max_energy_mj,
        "temperature_after_c": config.max_temperature_c,
    }
    return {k: float(v) for k, v in limits.items() if v is not None}


@dataclass
class Measurer:
    """Measures files on the study's devices (name -> pool, in objective order).

    ``before_quiet`` is called before a device on this machine measures: the driver lets
    its live report finish, so nothing of the search's own runs meanwhile.
    """

    study: optuna.Study
    config: StudyConfig
    folder: Path
    devices: Mapping[str, DeviceEvaluator]
    executor: Executor
    console: Console
    before_quiet: Callable[[], None]
    references: References | None = None  # files latencies are paired with

    @property
    def shares_host_cpu(self) -> bool:
        """Whether a device measures on this machine (then measure now, with work paused)."""
        return any(d.shares_host_cpu for d in self.devices.values())

    def measure(self, tflite: bytes, reference: Reference | str) -> dict[str, Measurement]:
        """One measurement of ``tflite`` per device name.

        Args:
            tflite: the candidate's file.
            reference: the file it is paired with (``reference_for``), or why it keeps
                its own median.

        Returns:
            Device name -> its measurement, in the study's device order.

        Raises:
            TrialFailed: a device could not run the file.
            DeviceUnavailable: a device could not be reached.
        """
        spec = measurement_spec(self.config)
        here = {n: d for n, d in self.devices.items() if d.shares_host_cpu}
        remote = {n: d for n, d in self.devices.items() if not d.shares_host_cpu}
        results: dict[str, Measurement] = {}
        with cf.ThreadPoolExecutor(max(1, len(remote))) as threads:
            futures = {
                n: threads.submit(self._measure_on, n, d, tflite, spec, reference)
                for n, d in remote.items()
            }
            if here:
                # A quiet host: trial work is paused, and the live report (rendered in a
                # thread of this process) is let finish first; artifacts and storage
                # writes come after the measurement, in this thread.
                self.before_quiet()
                self.executor.pause()
                try:
                    for name, device in here.items():
                        results[name] = self._measure_on(name, device, tflite, spec, reference)
                finally:
                    self.executor.resume()
            for name, pending in futures.items():
                results[name] = pending.result()
        return {name: results[name] for name in self.devices}

    def _measure_on(
        self,
        name: str,
        device: DeviceEvaluator,
        tflite: bytes,
        spec: BenchmarkSpec,
        reference: Reference | str,
    ) -> Measurement:
        measured = device.measure(tflite, spec)
        rounds = RoundsSpec(threads=self.config.threads, rounds=self.config.paired_rounds)
        if reference == ANCHOR:
            return anchored(device, tflite, measured, rounds)
        if isinstance(reference, str):  # why it keeps its own median
            measured.unavailable["reference_ratio"] = reference
            return measured
        return at_reference_speed(device, name, tflite, measured, reference, rounds)

    def reference_for(self, tflite: bytes) -> Reference | str:
        """The file ``tflite`` is paired with, or why it is not.

        Reads the study: call it from the driver's thread.

        Args:
            tflite: the candidate's file.

        Returns:
            The reference file to pair with, ``ANCHOR`` for the float32 baseline, or
            the reason it is not paired.
        """
        if self.references is None:
            self.references = References(self.folder)
        known = self.references
        if len(known.known or {}) < len(FAMILIES) and not known.unpaired:
            known.learn(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            if known.unpaired:
                self.console.print(f"[yellow]latencies are not paired: {known.unpaired}")
        return known.for_file(tflite)

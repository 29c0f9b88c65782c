"""The DeviceEvaluator plugin point: measure a TFLite file on one device."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class BenchmarkSpec:
    threads: int = 1
    warmup: int = 5
    min_runs: int = 50
    min_seconds: float = 1.0
    timeout_s: float = 300.0
    warmup_seconds: float = 0.5
    cooldown_c: float | None = None  # wait until the device is at most this hot
    cooldown_timeout_s: float = 300.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Measurement:
    """One device's numbers for one file. A number the device cannot give is None,
    with the reason in ``unavailable`` — never 0 and never invented."""

    median_ms: float
    p90_ms: float | None  # None where the device's tool does not report it (adb: p95)
    min_ms: float
    std_ms: float
    count: int
    threads: int
    p95_ms: float | None = None
    mean_ms: float | None = None
    warmup_runs: int | None = None
    wall_s: float | None = None  # how long the timed loop ran
    init_ms: float | None = None
    first_inference_ms: float | None = None
    peak_memory_mb: float | None = None
    model_memory_mb: float | None = None
    runtime: str | None = None
    energy_mj: float | None = None  # over the timed runs
    energy_per_inference_mj: float | None = None
    energy_source: str | None = None  # rapl:..., battery:...
    temperature_before_c: float | None = None
    temperature_after_c: float | None = None
    cpu_freq_mhz: float | None = None
    cooldown_s: float | None = None
    device: str | None = None  # which member of a device pool measured it
    node: str | None = None  # the host or Ray node id it ran on
    measured_from: float | None = None  # epoch seconds: when the device was busy with it
    measured_until: float | None = None
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class DeviceEvaluator(ABC):
    """Measures latency (and what else the device exposes) of a TFLite file.

    Contract (tests/evaluators/test_conformance.py): warm-up, then repeats until
    both ``spec.min_runs`` and ``spec.min_seconds`` are reached; reports median,
    p90, min, std and count; a failure to run the file raises TrialFailed with
    the reason; metrics it cannot read are None with a reason.
    """

    name: str
    # True when the device is this machine: trial work is paused while it measures.
    shares_host_cpu: bool = False

    @abstractmethod
    def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
        """Measure ``tflite`` once per ``spec``."""

    def ping(self) -> None:
        """Raise DeviceUnavailable if the device cannot take a measurement now.

        The default never does: a device with no way to probe is assumed present."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the device is (host, CPU, runtime, ...); may raise DeviceUnavailable."""
        return {"name": self.name}

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
    target_ci: float = 0.02  # time until the median's 95% interval is within +-2% ...
    max_seconds: float = 10.0  # ... or the timed runs took this long
    # After the timed runs, profile this many runs op by op (0: no device profile).
    op_profile_runs: int = 0
    # Loads of the file the timed runs are shared among: one load's memory placement sets
    # its speed (deploy/bench.py). Devices whose tool takes one load (adb) ignore it.
    placements: int = 4

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values, to send to an agent or a child process.

        Returns:
            Field name -> value.
        """
        return asdict(self)


@dataclass(frozen=True)
class RoundsSpec:
    """Paired rounds: in each round every file is timed for a short block, in rotating
    order, so the host's slow drift hits all files of a round alike."""

    threads: int = 1
    rounds: int = 30
    block_seconds: float = 0.1
    block_min_runs: int = 5
    block_warmup: int = 3  # untimed runs before each block (the others evicted the caches)
    timeout_s: float = 900.0

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values, to send to an agent or a child process.

        Returns:
            Field name -> value.
        """
        return asdict(self)

    def block_spec(self) -> BenchmarkSpec:
        """One block as a measurement of its own (devices that take one file at a time).

        Returns:
            A spec that times one file for about ``block_seconds`` (at least
            ``block_min_runs`` runs) after ``block_warmup`` untimed runs, in one load.
        """
        return BenchmarkSpec(
            threads=self.threads,
            warmup=self.block_warmup,
            min_runs=self.block_min_runs,
            min_seconds=self.block_seconds,
            warmup_seconds=0.0,
            target_ci=1.0,  # a block is as long as asked, not until a precision
            max_seconds=self.block_seconds,
            timeout_s=self.timeout_s,
            placements=1,  # every block is a load of its own already
        )


@dataclass
class Rounds:
    """What paired rounds gave: per file (in the order given), one median per round."""

    block_ms: list[list[float]]
    threads: int
    device: str | None = None  # which pool member measured every round
    node: str | None = None
    cores: list[int] | None = None
    steal_pct: float | None = None
    core_shared_pct: float | None = None
    other_load_cpus: float | None = None
    # rounds measured again because something else took the measuring core meanwhile
    rounds_redone: int | None = None
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The rounds as plain values (JSON), as an agent or child process sends them.

        Returns:
            Field name -> value.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rounds:
        """Rounds from :meth:`to_dict`'s form.

        Args:
            data: field name -> value; keys it does not know (a newer agent's) are ignored.

        Returns:
            The rounds.

        Raises:
            TypeError: a required field is missing (not an answer about rounds).
        """
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


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
    median_low_ms: float | None = None  # the median's 95% interval
    median_high_ms: float | None = None
    mean_ms: float | None = None
    warmup_runs: int | None = None
    wall_s: float | None = None  # how long the timed loop ran
    init_ms: float | None = None
    first_inference_ms: float | None = None
    peak_memory_mb: float | None = None
    model_memory_mb: float | None = None
    runtime: str | None = None
    energy_mj: float | None = None  # over the timed runs (and the later loads' warm-ups)
    energy_per_inference_mj: float | None = None
    energy_source: str | None = None  # rapl:..., battery:...
    temperature_before_c: float | None = None
    temperature_after_c: float | None = None
    cpu_freq_mhz: float | None = None
    cooldown_s: float | None = None
    cores: list[int] | None = None  # the cores the measuring process was pinned to
    # What else used the CPU over the timed runs: the hypervisor (steal) and other
    # processes, on the measuring cores and anywhere; how often it was measured again.
    steal_pct: float | None = None
    core_shared_pct: float | None = None
    other_load_cpus: float | None = None
    remeasured: int | None = None
    placement_medians_ms: list[float] | None = None  # each load's own median (deploy/bench.py)
    huge_pages_mb: float | None = None  # of the measuring process, in transparent huge pages
    disturbed: bool | None = None  # still over the thresholds after the last attempt
    device: str | None = None  # which member of a device pool measured it
    node: str | None = None  # the host or Ray node id it ran on
    measured_from: float | None = None  # epoch seconds: when the device was busy with it
    measured_until: float | None = None
    # Per-op time of the file when the spec asked for it: {"ops": [{"source", "kind",
    # "index", "partition", "ms"}, ...], "run_ms", "runs"} (deploy/op_profiler.py).
    op_profile: dict[str, Any] | None = None
    # Timings at the reference's speed (search/reference_speed.py): the median of this
    # file's own runs, the reference trial it was paired with, the ratio to it (with its
    # 95% interval) and over how many rounds.
    raw_median_ms: float | None = None
    reference_trial: int | None = None
    reference_ratio: float | None = None
    reference_ratio_low: float | None = None
    reference_ratio_high: float | None = None
    paired_rounds: int | None = None
    # The float32 baseline (the anchor of its study's latencies): its median in each of
    # the processes it was measured in, the first its own measurement's.
    process_medians_ms: list[float] | None = None
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The measurement as plain values (JSON), as stored and sent.

        Returns:
            Field name -> value; None where the device gave no number.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """A measurement from :meth:`to_dict`'s form.

        Args:
            data: field name -> value; keys it does not know (a newer agent's or tool's)
                are ignored.

        Returns:
            The measurement.

        Raises:
            TypeError: a required field is missing (not an answer about a measurement).
        """
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class DeviceEvaluator(ABC):
    """Measures latency (and what else the device exposes) of a TFLite file.

    Contract (tests/evaluators/test_conformance.py): warm-up, then repeats until
    both ``spec.min_runs`` and ``spec.min_seconds`` are reached; reports median,
    p90, min, std and count; a failure to run the file raises TrialFailed with
    the reason; metrics it cannot read are None with a reason.

    A new device kind, e.g. one that times files with its own tool (then give it a
    spec scheme in evaluators/devices.py and a case in the conformance test)::

        class BoardEvaluator(DeviceEvaluator):
            name = "board"

            def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
                times = sorted(run_on_board(tflite, spec))  # ms per timed run
                if not times:
                    raise TrialFailed("board: the file did not run")
                return Measurement(
                    median_ms=statistics.median(times),
                    p90_ms=times[int(0.9 * (len(times) - 1))],
                    min_ms=times[0],
                    std_ms=statistics.pstdev(times),
                    count=len(times),
                    threads=spec.threads,
                )
    """

    name: str
    # True when the device is this machine: trial work is paused while it measures.
    shares_host_cpu: bool = False

    @abstractmethod
    def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
        """Measure ``tflite`` once per ``spec``.

        Args:
            tflite: the file's bytes.
            spec: threads, warm-up, the least runs and seconds, when to stop.

        Returns:
            The measurement; a reading the device cannot give is None, with its reason
            in ``unavailable``.

        Raises:
            TrialFailed: the file does not run on the device.
            DeviceUnavailable: the device cannot be reached.
        """

    def measure_rounds(self, files: list[bytes], spec: RoundsSpec) -> Rounds:
        """Paired rounds of ``files`` on this one device (see RoundsSpec). This default
        measures each block as a measurement of its own; a device that can hold several
        files at once (local, agent, Ray) interleaves them in one process instead.

        Args:
            files: the TFLite files' bytes, timed against each other.
            spec: the number of rounds, each block's length and warm-up, the threads.

        Returns:
            Per file, in the order of ``files``, one median block time (ms) per round.

        Raises:
            TrialFailed: a file does not run on the device.
            DeviceUnavailable: the device cannot be reached.
        """
        blocks: list[list[float]] = [[] for _ in files]
        last: Measurement | None = None
        for round_index in range(spec.rounds):
            for offset in range(len(files)):
                which = (round_index + offset) % len(files)
                last = self.measure(files[which], spec.block_spec())
                blocks[which].append(last.median_ms)
        return Rounds(
            blocks,
            spec.threads,
            device=last.device if last else None,
            node=last.node if last else None,
            unavailable={"steal_pct": "measured block by block; no load over the rounds"},
        )

    def ping(self) -> None:
        """Raise DeviceUnavailable if the device cannot take a measurement now.

        The default never does: a device with no way to probe is assumed present."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the device is (host, CPU, runtime, ...); may raise DeviceUnavailable.

        Returns:
            JSON-able facts about the device, ``name`` always among them.

        Raises:
            DeviceUnavailable: the device cannot be reached to ask.
        """
        return {"name": self.name}

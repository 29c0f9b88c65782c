"""Latency at the reference's speed: the number a search stores for a candidate.

A median of one file's own runs is the host's speed at that moment. On a 2-core AMD EPYC
VM, ten measurements of one file during a search ranged 1.55x (benchmarks/README.md,
"Measurement repeatability"), with no steal and no other process to blame; no stopping rule
on a file's own runs makes that repeatable. Files timed together in paired rounds are
compared at one moment, and their ratio holds where their medians do not. So after its own
measurement (memory, energy, its runs), every candidate is timed in paired rounds with a
reference file on the same device, and the study stores

    latency = the reference's stored latency x the median of the per-round ratios

with the interval of that median scaled alike. The candidate's own median is kept as
``raw_median_ms``; p90, p95, min, mean and std are scaled by the same factor, so the whole
record is at one speed of the host.

References by kernel family. The int8/float32 ratio of the digits files itself drifted by 7%
over minutes on that VM (int8 and float32 kernels slow down differently), while a file timed
against a file of its own kind held within 2%. So a candidate whose weighted ops read int8
activations is paired with the int8 baseline, any other with the float32 baseline. The int8
baseline was itself paired with the float32 baseline: one chain, every latency of a study at
the speed its float32 baseline was measured at. That anchor is measured in several
processes and stores the fastest of their medians (``anchored``).

The rounds are split among several processes (``SPLITS``): a process's memory placement sets
a file's speed for as long as it lives, so the ratio from one process carries that luck. On
the EPYC VM, eight pairings of a searched digits file with its reference, 24 rounds each,
ranged 1.053 (float32 kernels) and 1.066 (int8) in three processes, 1.023-1.039 and
1.032-1.034 in six (two runs), at 6 s and 8 s a pairing; eight were no better (1.019,
1.069). Log: benchmarks/logs/paired_splits-20261203-ed41764-epyc.log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from devicefit.errors import TrialFailed
from devicefit.evaluators.base import DeviceEvaluator, Measurement, RoundsSpec
from devicefit.evaluators.tflite_ops import weighted_ops
from devicefit.results.speedups import paired_speedup
from devicefit.search import attrs

FAMILIES = ("float32", "int8")  # baselines that are references, for files of their kind
SPLITS = 6  # child processes the rounds are shared among ...
SPLIT_ROUNDS = 4  # ... with at least this many rounds each (a process costs about 0.6 s)
SCALED = ("p90_ms", "p95_ms", "min_ms", "mean_ms", "std_ms")
# What ``References.for_file`` answers for the float32 baseline itself (see ``anchored``).
ANCHOR = "the float32 baseline: the anchor of the study's latencies"


def family(tflite: bytes) -> str:
    """'int8' when a weighted op of the file reads int8 activations, else 'float32'.

    Args:
        tflite: a TFLite file; one the schema reader cannot walk counts as float32.

    Returns:
        The kernel family, a key of the references.
    """
    try:
        ops = weighted_ops(tflite)
    except Exception:  # noqa: BLE001 - a file the schema reader cannot walk: float kernels
        return "float32"
    return "int8" if any(op.input_type == "INT8" for op in ops) else "float32"


@dataclass(frozen=True)
class Reference:
    trial: int
    tflite: bytes
    latency_ms: dict[str, float]  # device name -> the reference's stored latency


@dataclass
class References:
    """The study's reference files, learnt from its complete baseline trials."""

    folder: Path
    known: dict[str, Reference] | None = None
    # Why this study's candidates keep their own medians, when they must (see ``learn``).
    unpaired: str | None = None

    def learn(self, trials: list[FrozenTrial]) -> None:
        """Learn the references from the complete baseline trials (the first of each
        family), and whether the study's candidates must keep their own medians
        (``unpaired``).

        Args:
            trials: the study's trials, in any order.
        """
        known = self.known if self.known is not None else {}
        for trial in sorted(trials, key=lambda t: t.number):
            mode = trial.user_attrs.get(attrs.BASELINE)
            latency = (trial.user_attrs.get(attrs.METRICS) or {}).get("latency") or {}
            if trial.state == TrialState.COMPLETE and any(
                "raw_median_ms" not in (m or {}) for m in latency.values()
            ):
                # Measured before latencies were paired: pairing the new trials would put
                # them on another scale than the old ones (and pool the two).
                self.unpaired = "a study measured before paired latencies: its own median"
            if trial.state != TrialState.COMPLETE or mode not in FAMILIES or mode in known:
                continue
            path = self.folder / attrs.TRIALS_DIR / str(trial.number) / "model.tflite"
            medians = {
                device: float(m["median_ms"])
                for device, m in latency.items()
                if (m or {}).get("median_ms") is not None
            }
            if not path.is_file():
                if mode == "float32":
                    self.unpaired = (
                        f"the float32 baseline's file ({path}) is not in the results folder: "
                        "its own median"
                    )
                continue
            if medians:
                known[mode] = Reference(trial.number, path.read_bytes(), medians)
        self.known = known

    def for_file(self, tflite: bytes) -> Reference | str:
        """The reference of ``tflite``'s family, or the float32 baseline; else why the file
        keeps its own median (before the float32 baseline is measured: it is that baseline,
        the study's first reference).

        Args:
            tflite: the candidate's file.

        Returns:
            The Reference, or the reason as text (``ANCHOR`` for the float32 baseline
            itself).
        """
        known = self.known or {}
        if self.unpaired:
            return self.unpaired
        found = known.get(family(tflite)) or known.get("float32")
        return found or ANCHOR


def at_reference_speed(
    device: DeviceEvaluator,
    name: str,
    tflite: bytes,
    measured: Measurement,
    reference: Reference,
    spec: RoundsSpec,
) -> Measurement:
    """``measured`` with its timings at the reference's speed: ``spec.rounds`` paired rounds
    of the reference and ``tflite`` on ``device`` (the pool ``name``), in up to ``SPLITS``
    processes. Raises what the device raises.

    Args:
        device, name, tflite: the pool; its name in the reference's latencies; the file.
        measured, reference, spec: its own measurement, changed in place; its reference; the rounds.

    Returns:
        ``measured``, as is when the reference has no latency there or no round is asked.

    Raises:
        TrialFailed: the rounds gave no usable ratio."""
    anchor = reference.latency_ms.get(name)
    if anchor is None or spec.rounds < 1:
        return measured
    splits = max(1, min(SPLITS, spec.rounds // SPLIT_ROUNDS))
    base, extra = divmod(spec.rounds, splits)
    reference_ms: list[float] = []
    candidate_ms: list[float] = []
    for index in range(splits):
        part = replace(spec, rounds=base + (1 if index < extra else 0))
        blocks = device.measure_rounds([reference.tflite, tflite], part).block_ms
        reference_ms += blocks[0]
        candidate_ms += blocks[1]
    if len(reference_ms) != len(candidate_ms) or not any(ms > 0 for ms in candidate_ms):
        raise TrialFailed(
            f"paired rounds with trial #{reference.trial} gave no usable ratio "
            f"({len(reference_ms)} and {len(candidate_ms)} blocks)"
        )
    speedup = paired_speedup(reference_ms, candidate_ms)  # the reference's time / ours
    if not (speedup.median > 0 and speedup.low > 0 and math.isfinite(speedup.high)):
        raise TrialFailed(f"paired rounds with trial #{reference.trial}: ratio {speedup}")
    _rescale(measured, anchor / speedup.median, anchor / speedup.high, anchor / speedup.low)
    measured.reference_trial = reference.trial
    measured.reference_ratio = 1.0 / speedup.median
    measured.reference_ratio_low, measured.reference_ratio_high = (
        1.0 / speedup.high,
        1.0 / speedup.low,
    )
    measured.paired_rounds = speedup.rounds
    return measured


def anchored(
    device: DeviceEvaluator, tflite: bytes, measured: Measurement, spec: RoundsSpec
) -> Measurement:
    """The float32 baseline, the anchor every other latency of its study is scaled to, at
    its undisturbed speed: the fastest of its own measurement's median and one more from
    each of ``SPLITS`` processes (``spec.rounds`` rounds of the file alone among them); the
    interval is the range of those medians. Raises what the device raises.

    Why several processes: one process's luck would otherwise move the whole study. On a
    2-core EPYC VM a stored anchor came out 2.70 ms where the file measured alone afterwards
    took 2.99-3.28 ms; on a Xeon VM an anchor's own measurement took 3.47 ms where its six
    more processes took 2.66-2.86 ms. Why the fastest, not their median: the host's
    disturbances only slow a process, and they come in spells of tens of seconds (other
    guests; none of this machine's processes ran, and a live training process, stopped
    workers or a CPU burn just before made no difference). Over 21 anchorings of the digits
    float32 file in 35 minutes on the Xeon VM, the fastest process's median ranged
    2.555-2.700 ms (1.057x) and the median over the seven 2.571-3.017 ms (1.173x): in a
    spell the median moved with it (benchmarks/anchor_probe.py; log:
    benchmarks/logs/anchor-20261203-ce22214-xeon.log).

    Args:
        device: the device pool the baseline was measured on.
        tflite: the float32 baseline's file.
        measured: its own measurement; changed in place.
        spec: the rounds and threads shared out among the processes.

    Returns:
        ``measured`` at that speed (as is, but marked the anchor, when no round is asked).

    Raises:
        TrialFailed: no process gave a usable median.
    """
    measured.unavailable["reference_ratio"] = ANCHOR
    if spec.rounds < 1:
        return measured
    part = replace(spec, rounds=max(1, spec.rounds // SPLITS))
    medians = [measured.median_ms]
    for _ in range(SPLITS):
        blocks = device.measure_rounds([tflite], part).block_ms[0]
        if blocks:
            medians.append(float(np.median(blocks)))
    usable = [ms for ms in medians if ms > 0]
    if not usable:
        raise TrialFailed(f"the float32 baseline's processes gave no usable median ({medians})")
    _rescale(measured, min(usable), min(usable), max(usable))
    measured.process_medians_ms = medians
    return measured


def _rescale(measured: Measurement, median: float, low: float, high: float) -> None:
    """``measured`` at the median ``median`` (interval ``low``-``high``): its own median
    kept as ``raw_median_ms``, the other timings scaled alike."""
    factor = median / measured.median_ms if measured.median_ms > 0 else 1.0
    measured.raw_median_ms = measured.median_ms
    measured.median_ms = median
    measured.median_low_ms, measured.median_high_ms = low, high
    for key in ("median_low_ms", "median_high_ms"):  # a device that gives none (adb) has them
        measured.unavailable.pop(key, None)
    for key in SCALED:
        value = getattr(measured, key)
        if value is not None:
            setattr(measured, key, value * factor)

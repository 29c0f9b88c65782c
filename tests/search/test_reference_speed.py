"""Latency at the reference's speed (search/reference_speed.py): the stored latency is the
reference's times the paired ratio, whatever speed the host had when the candidate was
measured; files of int8 kernels are paired with the int8 baseline, others with float32.

The device here is a test double whose host speed drifts between rounds: what is tested is
the arithmetic beside it. Real rounds on the real device are in the 20-trial study of
tests/search/test_same_file.py and in tests/evaluators/test_paired_rounds.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from devicefit.errors import TrialFailed
from devicefit.evaluators.base import (
    BenchmarkSpec,
    DeviceEvaluator,
    Measurement,
    Rounds,
    RoundsSpec,
)
from devicefit.search.reference_speed import (
    ANCHOR,
    SPLITS,
    Reference,
    References,
    anchored,
    at_reference_speed,
    family,
)

WORK_MS = {b"reference": 2.0, b"candidate": 0.5}  # at the host's nominal speed


class DriftingHost(DeviceEvaluator):
    """Every file takes its work times the host's speed, which changes from call to call
    (and from round to round) by up to 1.6x; within a round the files see one speed."""

    name = "drifting"

    def __init__(self, speeds: list[float]) -> None:
        self.speeds = itertools.cycle(speeds)
        self.round_calls: list[int] = []

    def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
        ms = WORK_MS[tflite] * next(self.speeds)
        return Measurement(ms, ms * 1.2, ms * 0.9, ms * 0.1, 50, 1, mean_ms=ms * 1.05)

    def measure_rounds(self, files: list[bytes], spec: RoundsSpec) -> Rounds:
        self.round_calls.append(spec.rounds)
        blocks: list[list[float]] = [[] for _ in files]
        for _ in range(spec.rounds):
            speed = next(self.speeds)
            for which, content in enumerate(files):
                blocks[which].append(WORK_MS[content] * speed)
        return Rounds(blocks, spec.threads)


REFERENCE = Reference(trial=0, tflite=b"reference", latency_ms={"local": 2.4})


@pytest.mark.parametrize("speeds", [[1.0], [1.6], [0.8, 1.3, 1.0, 1.55]])
def test_the_stored_latency_does_not_follow_the_hosts_speed(speeds: list[float]) -> None:
    host = DriftingHost(speeds)
    own = host.measure(b"candidate", BenchmarkSpec())
    raw = own.median_ms
    stored = at_reference_speed(host, "local", b"candidate", own, REFERENCE, RoundsSpec(rounds=24))
    # 2.4 ms (the reference's stored latency) x 0.25 (the work ratio), at any host speed
    assert stored.median_ms == pytest.approx(0.6)
    assert stored.median_low_ms == pytest.approx(0.6) and stored.median_high_ms == pytest.approx(
        0.6
    )
    assert stored.reference_ratio == pytest.approx(0.25)
    assert stored.reference_trial == 0 and stored.paired_rounds == 24
    assert stored.raw_median_ms == pytest.approx(raw)
    # the rest of the record at the same speed as its median
    assert stored.p90_ms == pytest.approx(0.6 * 1.2)
    assert stored.min_ms == pytest.approx(0.6 * 0.9)
    assert stored.mean_ms == pytest.approx(0.6 * 1.05)
    assert stored.std_ms == pytest.approx(0.06)
    assert host.round_calls == [4] * 6  # six processes share the rounds


def test_the_interval_comes_from_the_rounds_ratios() -> None:
    class Noisy(DriftingHost):
        def measure_rounds(self, files: list[bytes], spec: RoundsSpec) -> Rounds:
            rng = np.random.default_rng(len(self.round_calls))
            rounds = super().measure_rounds(files, spec)
            rounds.block_ms[1] = [ms * rng.uniform(0.95, 1.05) for ms in rounds.block_ms[1]]
            return rounds

    host = Noisy([1.0, 1.4])
    own = host.measure(b"candidate", BenchmarkSpec())
    stored = at_reference_speed(host, "local", b"candidate", own, REFERENCE, RoundsSpec(rounds=30))
    assert 0.6 * 0.95 < stored.median_low_ms < stored.median_ms < stored.median_high_ms < 0.63
    assert stored.reference_ratio_low < stored.reference_ratio < stored.reference_ratio_high


def test_few_rounds_take_one_process_and_none_leave_the_own_median() -> None:
    host = DriftingHost([1.3])
    own = host.measure(b"candidate", BenchmarkSpec())
    at_reference_speed(host, "local", b"candidate", own, REFERENCE, RoundsSpec(rounds=4))
    assert host.round_calls == [4]
    untouched = host.measure(b"candidate", BenchmarkSpec())
    kept = at_reference_speed(
        host, "local", b"candidate", untouched, REFERENCE, RoundsSpec(rounds=0)
    )
    assert kept.median_ms == pytest.approx(0.65) and kept.reference_trial is None
    # a device the reference was not measured on keeps its own median too
    other = at_reference_speed(host, "pi", b"candidate", untouched, REFERENCE, RoundsSpec(rounds=4))
    assert other.reference_trial is None


def test_the_anchor_is_the_fastest_of_its_processes_not_one_processs_luck() -> None:
    """The float32 baseline's own measurement landed in a slow spell (1.7x the host's
    undisturbed speed); its six more processes ran at 1.0, 1.3, 1.1, 0.95, 1.2 and 1.05x:
    the stored anchor is the fastest of the seven, 1.9 ms, not the slow 3.4 ms it measured
    itself nor their median (2.1 ms)."""
    host = DriftingHost([1.7, *[s for s in (1.0, 1.3, 1.1, 0.95, 1.2, 1.05) for _ in range(4)]])
    own = host.measure(b"reference", BenchmarkSpec())
    assert own.median_ms == pytest.approx(3.4)
    stored = anchored(host, b"reference", own, RoundsSpec(rounds=24))
    assert host.round_calls == [4] * SPLITS  # a process each, the rounds shared among them
    assert stored.median_ms == pytest.approx(1.9)
    assert stored.raw_median_ms == pytest.approx(3.4)
    assert stored.process_medians_ms == pytest.approx([3.4, 2.0, 2.6, 2.2, 1.9, 2.4, 2.1])
    # the interval: the range of the process medians
    assert (stored.median_low_ms, stored.median_high_ms) == pytest.approx((1.9, 3.4))
    factor = 1.9 / 3.4  # the rest of the record at the anchor's speed
    assert stored.p90_ms == pytest.approx(3.4 * 1.2 * factor)
    assert stored.min_ms == pytest.approx(3.4 * 0.9 * factor)
    assert stored.reference_trial is None and stored.unavailable["reference_ratio"] == ANCHOR


def test_an_anchor_without_rounds_keeps_its_own_median_and_an_empty_process_fails() -> None:
    host = DriftingHost([1.3])
    own = host.measure(b"reference", BenchmarkSpec())
    kept = anchored(host, b"reference", own, RoundsSpec(rounds=0))
    assert host.round_calls == [] and kept.median_ms == pytest.approx(2.6)
    assert kept.process_medians_ms is None
    few = anchored(
        host, b"reference", host.measure(b"reference", BenchmarkSpec()), RoundsSpec(rounds=4)
    )
    assert host.round_calls == [1] * SPLITS  # never fewer processes than SPLITS

    class Silent(DriftingHost):
        def measure_rounds(self, files: list[bytes], spec: RoundsSpec) -> Rounds:
            return Rounds([[0.0] for _ in files], spec.threads)

    with pytest.raises(TrialFailed, match="no usable median"):
        anchored(Silent([1.0]), b"reference", Measurement(0.0, 0, 0, 0, 1, 1), RoundsSpec(24))
    assert few.median_ms == pytest.approx(2.6)


def _float_and_int8() -> tuple[bytes, bytes]:
    import keras
    import tensorflow as tf

    from devicefit.spaces.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )

    def int8(converter: tf.lite.TFLiteConverter) -> None:
        samples = np.random.default_rng(0).random((8, 1, 8, 8, 3), dtype=np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s] for s in samples)

    def float16(converter: tf.lite.TFLiteConverter) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]

    return to_tflite(model, (1, 8, 8, 3), float16), to_tflite(model, (1, 8, 8, 3), int8)


def test_int8_files_are_paired_with_the_int8_baseline(tmp_path: Path) -> None:
    float16, int8 = _float_and_int8()
    assert (family(float16), family(int8), family(b"not a tflite file")) == (
        "float32",
        "int8",
        "float32",
    )
    references = References(tmp_path)
    assert isinstance(references.for_file(int8), str)  # before the float32 baseline: own median
    float32_ref = Reference(0, b"f32", {"local": 3.0})
    references.known = {"float32": float32_ref}
    assert references.for_file(int8) is float32_ref  # the int8 baseline, paired with float32
    int8_ref = Reference(2, b"i8", {"local": 0.7})
    references.known["int8"] = int8_ref
    assert references.for_file(int8) is int8_ref
    assert references.for_file(float16) is float32_ref


def _baseline(number: int, mode: str | None, ms: float, state: str = "COMPLETE", old=False):
    import optuna
    from optuna.trial import TrialState

    from devicefit.search import attrs

    measured = {"median_ms": ms} if old else {"median_ms": ms, "raw_median_ms": None}
    trial = optuna.trial.create_trial(
        state=TrialState[state],
        values=[90.0, ms] if state == "COMPLETE" else None,
        user_attrs={attrs.METRICS: {"latency": {"local": measured}}}
        | ({attrs.BASELINE: mode} if mode else {}),
    )
    trial.number = number
    return trial


def _files(folder: Path, numbers: dict[int, bytes]) -> None:
    for number, content in numbers.items():
        (folder / "trials" / str(number)).mkdir(parents=True)
        (folder / "trials" / str(number) / "model.tflite").write_bytes(content)


def test_references_are_the_first_complete_baselines_with_their_files(tmp_path: Path) -> None:
    float16, int8 = _float_and_int8()
    _files(tmp_path, {0: b"f32-failed", 1: b"f32", 3: b"i8", 5: b"i8-again"})
    references = References(tmp_path)
    references.learn(
        [
            _baseline(5, "int8", 0.9),
            _baseline(0, "float32", 0.0, state="FAIL"),
            _baseline(1, "float32", 3.0),
            _baseline(2, "float16", 3.1),
            _baseline(3, "int8", 0.7),
            _baseline(4, None, 1.0),
        ]
    )
    assert references.unpaired is None
    assert {mode: (r.trial, r.tflite, r.latency_ms) for mode, r in references.known.items()} == {
        "float32": (1, b"f32", {"local": 3.0}),
        "int8": (3, b"i8", {"local": 0.7}),
    }
    assert references.for_file(int8).trial == 3 and references.for_file(float16).trial == 1


def test_a_study_that_cannot_be_paired_says_why(tmp_path: Path) -> None:
    float16, _ = _float_and_int8()
    fresh = References(tmp_path)
    fresh.learn([])
    assert "anchor" in fresh.for_file(float16)  # the float32 baseline itself
    missing = References(tmp_path)  # resumed where the results folder has no files
    missing.learn([_baseline(0, "float32", 3.0)])
    assert "not in the results folder" in missing.for_file(float16)
    _files(tmp_path, {0: b"f32"})
    legacy = References(tmp_path)  # trials measured before pairing: one scale, unpaired
    legacy.learn([_baseline(0, "float32", 3.0), _baseline(1, None, 1.0, old=True)])
    assert "before paired latencies" in legacy.for_file(float16)


def test_rounds_without_a_usable_ratio_fail_the_trial_and_adb_gains_an_interval() -> None:
    from devicefit.errors import TrialFailed

    class Broken(DriftingHost):
        def measure_rounds(self, files: list[bytes], spec: RoundsSpec) -> Rounds:
            return Rounds([[1.0] * spec.rounds, [0.0] * spec.rounds], spec.threads)

    host = Broken([1.0])
    with pytest.raises(TrialFailed, match="no usable ratio"):
        at_reference_speed(
            host,
            "local",
            b"candidate",
            host.measure(b"candidate", BenchmarkSpec()),
            REFERENCE,
            RoundsSpec(rounds=4),
        )
    plain = DriftingHost([1.0])
    own = plain.measure(b"candidate", BenchmarkSpec())
    own.unavailable = {"median_low_ms": "adb reports no interval", "p90_ms": "adb: p95"}
    stored = at_reference_speed(plain, "local", b"candidate", own, REFERENCE, RoundsSpec(rounds=4))
    assert stored.unavailable == {"p90_ms": "adb: p95"}

"""Conformance suite for every DeviceEvaluator (one class, parametrized over all of them)."""

import pytest

from devicefit.errors import TrialFailed
from devicefit.evaluators.base import BenchmarkSpec, DeviceEvaluator
from devicefit.evaluators.local import LocalEvaluator

EVALUATORS = {"local": LocalEvaluator}


@pytest.fixture(params=sorted(EVALUATORS))
def evaluator(request: pytest.FixtureRequest) -> DeviceEvaluator:
    return EVALUATORS[request.param]()


class TestDeviceEvaluatorConformance:
    def test_repeats_until_min_runs(self, evaluator: DeviceEvaluator, tiny_tflite: bytes) -> None:
        m = evaluator.measure(tiny_tflite, BenchmarkSpec(min_runs=37, min_seconds=0.0))
        assert m.count >= 37
        assert 0 < m.min_ms <= m.median_ms <= m.p90_ms
        assert m.std_ms >= 0 and m.threads == 1

    def test_repeats_until_min_seconds(
        self, evaluator: DeviceEvaluator, tiny_tflite: bytes
    ) -> None:
        m = evaluator.measure(tiny_tflite, BenchmarkSpec(min_runs=1, min_seconds=0.3))
        # The loop ran for at least 0.3 s: count x mean time covers it.
        assert m.count > 1 and m.count * (m.mean_ms or m.median_ms) >= 0.3 * 1000 * 0.9

    def test_threads_are_recorded(self, evaluator: DeviceEvaluator, tiny_tflite: bytes) -> None:
        m = evaluator.measure(tiny_tflite, BenchmarkSpec(threads=2, min_runs=5, min_seconds=0))
        assert m.threads == 2

    def test_memory_is_measured_or_explained(
        self, evaluator: DeviceEvaluator, tiny_tflite: bytes
    ) -> None:
        m = evaluator.measure(tiny_tflite, BenchmarkSpec(min_runs=5, min_seconds=0))
        assert (m.peak_memory_mb is not None and m.peak_memory_mb > 0) or (
            "peak_memory_mb" in m.unavailable
        )

    def test_broken_file_fails_the_measurement(self, evaluator: DeviceEvaluator) -> None:
        with pytest.raises(TrialFailed):
            evaluator.measure(b"TFL3 this is not a model", BenchmarkSpec(min_runs=1))

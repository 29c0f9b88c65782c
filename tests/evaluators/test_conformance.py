"""Conformance suite for every DeviceEvaluator (one class, parametrized over all of them)."""

from typing import Any

import pytest
from agent_helpers import TOKEN

from devicefit.errors import TrialFailed
from devicefit.evaluators.agent_client import AgentEvaluator
from devicefit.evaluators.base import BenchmarkSpec, DeviceEvaluator
from devicefit.evaluators.local import LocalEvaluator
from devicefit.evaluators.pool import DevicePool


def _agent(start_agent: Any, monkeypatch: pytest.MonkeyPatch) -> DeviceEvaluator:
    server = start_agent(token=TOKEN)
    monkeypatch.setenv("DEVICEFIT_TOKEN", TOKEN)
    return AgentEvaluator(server.url)


def _pool(start_agent: Any, monkeypatch: pytest.MonkeyPatch) -> DeviceEvaluator:
    return DevicePool("pool", [_agent(start_agent, monkeypatch), LocalEvaluator()])


# Every DeviceEvaluator, built against real servers where it needs one.
EVALUATORS = {
    "local": lambda start_agent, monkeypatch: LocalEvaluator(),
    "agent": _agent,
    "pool": _pool,
}


@pytest.fixture(params=sorted(EVALUATORS))
def evaluator(
    request: pytest.FixtureRequest, start_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> DeviceEvaluator:
    return EVALUATORS[request.param](start_agent, monkeypatch)


class TestDeviceEvaluatorConformance:
    def test_repeats_until_min_runs(self, evaluator: DeviceEvaluator, tiny_tflite: bytes) -> None:
        spec = BenchmarkSpec(min_runs=37, min_seconds=0.0, warmup=11, warmup_seconds=0.0)
        m = evaluator.measure(tiny_tflite, spec)
        assert m.count >= 37
        assert m.warmup_runs is not None and m.warmup_runs >= 11  # warm-up is not timed
        assert 0 < m.min_ms <= m.median_ms <= m.p90_ms
        assert m.std_ms >= 0 and m.threads == 1

    def test_repeats_until_min_seconds(
        self, evaluator: DeviceEvaluator, tiny_tflite: bytes
    ) -> None:
        m = evaluator.measure(tiny_tflite, BenchmarkSpec(min_runs=1, min_seconds=0.3))
        assert m.count > 1 and m.wall_s is not None and m.wall_s >= 0.3

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
        # The child's own peak, not the forking parent's (this test process holds
        # TensorFlow, several hundred MB): a LiteRT process with a tiny model is small.
        if m.peak_memory_mb is not None:
            assert m.peak_memory_mb < 300

    def test_broken_file_fails_the_measurement(self, evaluator: DeviceEvaluator) -> None:
        with pytest.raises(TrialFailed):
            evaluator.measure(b"TFL3 this is not a model", BenchmarkSpec(min_runs=1))

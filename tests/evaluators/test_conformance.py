"""Conformance suite for every DeviceEvaluator (one class, parametrized over all of them)."""

from typing import Any

import pytest
from agent_helpers import TOKEN

from devicefit.errors import TrialFailed
from devicefit.evaluators.agent_client import AgentEvaluator
from devicefit.evaluators.base import BenchmarkSpec, DeviceEvaluator
from devicefit.evaluators.local import LocalEvaluator
from devicefit.evaluators.pool import DevicePool

# Shares the session's Ray cluster: kept on one test worker.
pytestmark = pytest.mark.xdist_group("ray")


def _agent(start_agent: Any, monkeypatch: pytest.MonkeyPatch) -> DeviceEvaluator:
    server = start_agent(token=TOKEN)
    monkeypatch.setenv("DEVICEFIT_TOKEN", TOKEN)
    return AgentEvaluator(server.url)


def _adb(start_agent: Any, monkeypatch: pytest.MonkeyPatch) -> DeviceEvaluator:
    import tempfile
    from pathlib import Path

    from fake_android import make_fake_adb

    from devicefit.evaluators.adb import AdbEvaluator

    adb = make_fake_adb(Path(tempfile.mkdtemp(prefix="fake-phone-")))
    return AdbEvaluator(f"adb:emulator-5554?adb={adb}")


def _ray(start_agent: Any, monkeypatch: pytest.MonkeyPatch, cluster: Any) -> DeviceEvaluator:
    from devicefit.evaluators.ray_device import RayDeviceEvaluator

    return RayDeviceEvaluator(f"ray:pi4?address={cluster[0]}")


def _pool(start_agent: Any, monkeypatch: pytest.MonkeyPatch) -> DeviceEvaluator:
    return DevicePool("pool", [_agent(start_agent, monkeypatch), LocalEvaluator()])


# Every DeviceEvaluator, built against real servers where it needs one.
EVALUATORS = {
    "local": lambda start_agent, monkeypatch: LocalEvaluator(),
    "agent": _agent,
    "pool": _pool,
    "adb": _adb,  # a stand-in phone: see tests/fake_android.py
    "ray": _ray,  # a node of a real two-node cluster on loopback
}


@pytest.fixture(params=sorted(EVALUATORS))
def evaluator(
    request: pytest.FixtureRequest, start_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> DeviceEvaluator:
    if request.param == "ray":
        return _ray(start_agent, monkeypatch, request.getfixturevalue("ray_cluster"))
    return EVALUATORS[request.param](start_agent, monkeypatch)


def _upper(m: Any) -> float:
    """p90, or p95 where the device's tool reports that instead (and says so)."""
    if m.p90_ms is None:
        assert "p90_ms" in m.unavailable and m.p95_ms is not None
        return m.p95_ms
    return m.p90_ms


class TestDeviceEvaluatorConformance:
    def test_repeats_until_min_runs(self, evaluator: DeviceEvaluator, tiny_tflite: bytes) -> None:
        spec = BenchmarkSpec(min_runs=37, min_seconds=0.0, warmup=11, warmup_seconds=0.0)
        m = evaluator.measure(tiny_tflite, spec)
        assert m.count >= 37
        assert m.warmup_runs is not None and m.warmup_runs >= 11  # warm-up is not timed
        assert 0 < m.min_ms <= m.median_ms <= _upper(m)
        assert m.std_ms >= 0 and m.threads == 1

    def test_repeats_until_min_seconds(
        self, evaluator: DeviceEvaluator, tiny_tflite: bytes
    ) -> None:
        m = evaluator.measure(tiny_tflite, BenchmarkSpec(min_runs=1, min_seconds=0.3))
        assert m.count > 1
        if m.wall_s is None:  # a tool that does not say: the device was busy at least that long
            assert "wall_s" in m.unavailable
            assert m.measured_from is not None and m.measured_until is not None
            assert m.measured_until - m.measured_from >= 0.3
        else:
            assert m.wall_s >= 0.3

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

    def test_measurement_says_which_device_and_when(
        self, evaluator: DeviceEvaluator, tiny_tflite: bytes
    ) -> None:
        import time

        before = time.time()
        m = evaluator.measure(tiny_tflite, BenchmarkSpec(min_runs=3, min_seconds=0))
        assert m.node
        assert m.measured_from is not None and m.measured_until is not None
        assert before - 1 <= m.measured_from <= m.measured_until <= time.time() + 1

    def test_describe_names_the_device(self, evaluator: DeviceEvaluator) -> None:
        evaluator.ping()
        assert evaluator.describe()["name"] == evaluator.name

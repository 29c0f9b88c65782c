"""Conformance suite for every DeviceEvaluator (one class, parametrized over all of them)."""

from typing import Any

import pytest
from agent_helpers import TOKEN

from devicefit.errors import TrialFailed
from devicefit.evaluators.agent_client import AgentEvaluator
from devicefit.evaluators.base import BenchmarkSpec, DeviceEvaluator, RoundsSpec
from devicefit.evaluators.local import LocalEvaluator
from devicefit.evaluators.op_attribution import attribute, file_ops
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

    def test_the_median_comes_with_its_interval_or_a_reason(
        self, evaluator: DeviceEvaluator, tiny_tflite: bytes
    ) -> None:
        m = evaluator.measure(tiny_tflite, BenchmarkSpec(min_runs=20, min_seconds=0))
        if m.median_low_ms is None or m.median_high_ms is None:
            assert "median_low_ms" in m.unavailable and "median_high_ms" in m.unavailable
        else:
            assert m.median_low_ms <= m.median_ms <= m.median_high_ms

    def test_timing_goes_on_until_the_interval_is_tight(
        self, evaluator: DeviceEvaluator, tiny_tflite: bytes
    ) -> None:
        """An unreachable precision: timing stops at ``max_seconds``, not at ``min_runs``."""
        spec = BenchmarkSpec(min_runs=10, min_seconds=0.0, target_ci=1e-9, max_seconds=0.3)
        m = evaluator.measure(tiny_tflite, spec)
        if m.median_low_ms is None:  # a tool with no precision target says why
            assert "median_low_ms" in m.unavailable
            return
        assert m.count > 10 and m.wall_s is not None and m.wall_s >= 0.3

    def test_what_disturbed_it_is_recorded_or_explained(
        self, evaluator: DeviceEvaluator, tiny_tflite: bytes
    ) -> None:
        m = evaluator.measure(tiny_tflite, BenchmarkSpec(min_runs=5, min_seconds=0))
        if m.steal_pct is None:
            assert "steal_pct" in m.unavailable
        else:
            assert m.steal_pct >= 0 and m.core_shared_pct is not None
            assert m.other_load_cpus is not None and m.remeasured is not None
        assert m.cores is not None or "cores" in m.unavailable

    def test_paired_rounds_time_every_file_once_a_round(
        self, evaluator: DeviceEvaluator, tiny_tflite: bytes
    ) -> None:
        spec = RoundsSpec(rounds=4, block_seconds=0.02, block_min_runs=3)
        rounds = evaluator.measure_rounds([tiny_tflite, tiny_tflite], spec)
        assert [len(blocks) for blocks in rounds.block_ms] == [4, 4]
        assert all(ms > 0 for blocks in rounds.block_ms for ms in blocks)
        assert rounds.node and rounds.threads == 1

    def test_a_per_op_profile_when_asked_and_only_then(
        self, evaluator: DeviceEvaluator, tiny_tflite: bytes
    ) -> None:
        quick = {"min_runs": 5, "min_seconds": 0.0, "warmup": 2, "warmup_seconds": 0.0}
        assert evaluator.measure(tiny_tflite, BenchmarkSpec(**quick)).op_profile is None
        m = evaluator.measure(tiny_tflite, BenchmarkSpec(**quick, op_profile_runs=30))
        assert m.op_profile is not None, m.unavailable
        ops, run_ms = m.op_profile["ops"], m.op_profile["run_ms"]
        assert ops and m.op_profile["runs"] == 30
        # The ops ran inside the runs: their times add up to no more than the runs took.
        assert 0 < sum(op["ms"] for op in ops) <= run_ms * 1.05
        # Every op's time is traced to an op of the file.
        assert all(t.op is not None for t in attribute(ops, file_ops(tiny_tflite)))

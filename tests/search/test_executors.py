"""Conformance suite for every Executor: same results whichever runs the trial."""

from __future__ import annotations

from pathlib import Path

import pytest

from devicefit.search.executors import Executor, InProcessExecutor, ProcessPoolExecutor
from devicefit.search.sensitivity_request import SensitivityRequest
from devicefit.search.trial import TrialOutput, TrialRequest
from devicefit.spaces.base import Plan, Step
from devicefit.spaces.sensitivity import SensitivityPoint, sensitivity_jobs
from devicefit.tasks.base import TaskSpec

# Shares the session's Ray cluster: kept on one test worker.
# The module's fixture runs the same requests on all three executors (a Ray cluster
# among them), and on a fresh cache trains the digits task first: more than the suite's
# 600 s hang guard on a loaded 2-core machine.
pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.timeout(1200)]

DIGITS = TaskSpec("digits")
PRUNED = Plan(
    (Step("channel_pruning", {"ratio": 0.5}), Step("quantization", {"mode": "float32"})), 1
)
BROKEN = Plan((Step("no_such_technique", {}),), 0)


def _executor(kind: str, request: pytest.FixtureRequest) -> Executor:
    if kind == "in-process":
        return InProcessExecutor(threads=1)
    if kind == "ray":  # on the session's real two-node cluster
        from devicefit.search.ray_executor import RayExecutor

        address, _ = request.getfixturevalue("ray_cluster")
        return RayExecutor(address, workers=1, task=DIGITS)
    return ProcessPoolExecutor(workers=1, threads=1)


KINDS = ["in-process", "process-pool", "ray"]


def _sensitivity_share() -> SensitivityRequest:
    """Part of a digits sensitivity profile: channel pruning of two blocks at every level
    (scored on the Keras model) and quantization of one block (on the TFLite file)."""
    from devicefit.spaces import get_technique
    from devicefit.tasks import load_task

    model = load_task(DIGITS).model
    names = ("channel_pruning", "quantization")
    jobs = sensitivity_jobs(model, [get_technique(n) for n in names], "per-block")
    pruning = [j for j in jobs if j.technique == "channel_pruning"]
    units = sorted({j.unit for j in pruning})[:2]
    quantized = [j for j in jobs if j.technique == "quantization"]
    first = quantized[0].unit
    chosen = [j for j in pruning if j.unit in units]
    chosen += [j for j in quantized if j.unit == first and j.level in ("identity", "strong")]
    return SensitivityRequest(DIGITS, tuple(chosen), samples=128)


@pytest.fixture(scope="module")
def outputs(request: pytest.FixtureRequest) -> dict[str, dict[str, TrialOutput]]:
    """Each executor runs the same three requests: a real candidate, a broken one and a
    share of a sensitivity profile."""
    results = {}
    share = _sensitivity_share()
    for kind in KINDS:
        executor = _executor(kind, request)
        try:
            futures = {
                "pruned": executor.submit(TrialRequest(1, PRUNED.to_dict(), DIGITS, seed=0)),
                "broken": executor.submit(TrialRequest(2, BROKEN.to_dict(), DIGITS, seed=0)),
                "sensitivity": executor.submit(share),
            }
            results[kind] = {name: f.result(timeout=600) for name, f in futures.items()}
        finally:
            executor.shutdown()
    return results


@pytest.mark.parametrize("kind", KINDS)
class TestExecutorConformance:
    def test_candidate_is_built_converted_and_scored(self, outputs: dict, kind: str) -> None:
        out = outputs[kind]["pruned"]
        assert out.error is None
        assert out.tflite[4:8] == b"TFL3"
        assert out.metric > 80 and out.macs > 0 and out.params > 0
        assert {"build", "finetune", "convert", "evaluate"} <= set(out.timings_s)

    def test_bad_candidate_fails_without_raising(self, outputs: dict, kind: str) -> None:
        error = outputs[kind]["broken"].error
        assert error and "no_such_technique" in error

    def test_same_results_as_in_process(self, outputs: dict, kind: str) -> None:
        out, ref = outputs[kind]["pruned"], outputs["in-process"]["pruned"]
        assert out.macs == ref.macs and out.params == ref.params
        assert out.metric == pytest.approx(ref.metric, abs=1.0)

    def test_sensitivity_share_scores_the_same_points(self, outputs: dict, kind: str) -> None:
        points: list[SensitivityPoint] = outputs[kind]["sensitivity"]
        ref: list[SensitivityPoint] = outputs["in-process"]["sensitivity"]
        assert [(p.unit, p.technique, p.level) for p in points] == [
            (j.unit, j.technique, j.level) for j in _sensitivity_share().jobs
        ]
        assert all(p.error is None for p in points), points
        for point, same in zip(points, ref, strict=True):
            assert point.drop == pytest.approx(same.drop, abs=100 / 128 + 1e-9)  # one example
        # Removing nothing costs nothing, whichever way the point is scored.
        assert {p.drop for p in points if p.level == "identity"} == {0.0}
        assert max(p.drop for p in points if p.technique == "channel_pruning") > 0

    def test_records_where_the_trial_ran(self, outputs: dict, kind: str) -> None:
        node = outputs[kind]["pruned"].node
        assert (node is not None) == (kind == "ray")  # None: this machine


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]


def test_pause_stops_pool_workers_and_resume_restarts_them() -> None:
    executor = ProcessPoolExecutor(workers=2, threads=1)
    try:
        future = executor.submit(TrialRequest(0, PRUNED.to_dict(), DIGITS, seed=0))
        pids = executor._pids()
        assert pids
        executor.pause()
        assert all(_state(pid) == "T" for pid in pids)
        executor.resume()
        assert all(_state(pid) != "T" for pid in pids)
        assert future.result(timeout=600).error is None
    finally:
        executor.shutdown()

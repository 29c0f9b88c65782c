"""``ray:`` devices on a real two-node Ray cluster started on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from devicefit.errors import DeviceUnavailable
from devicefit.evaluators.base import BenchmarkSpec
from devicefit.evaluators.ray_device import RayDeviceEvaluator

# Shares the session's Ray cluster: kept on one test worker.
pytestmark = pytest.mark.xdist_group("ray")

QUICK = BenchmarkSpec(min_runs=3, min_seconds=0.2, warmup=1, warmup_seconds=0)


def test_measurements_run_on_the_node_with_the_resource(
    ray_cluster: Any, tiny_tflite: bytes
) -> None:
    address, pi4_node = ray_cluster
    device = RayDeviceEvaluator(f"ray:pi4?address={address}")
    measured = [device.measure(tiny_tflite, QUICK) for _ in range(3)]
    assert {m.node for m in measured} == {pi4_node}
    assert device.describe()["node"] == pi4_node


def test_measurements_on_one_node_never_overlap(ray_cluster: Any, tiny_tflite: bytes) -> None:
    from concurrent.futures import ThreadPoolExecutor

    device = RayDeviceEvaluator(f"ray:pi4?address={ray_cluster[0]}")
    with ThreadPoolExecutor(3) as threads:
        measured = list(threads.map(lambda _: device.measure(tiny_tflite, QUICK), range(3)))
    spans = sorted((m.measured_from, m.measured_until) for m in measured)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end


def test_a_resource_no_node_offers_is_unavailable(ray_cluster: Any, tiny_tflite: bytes) -> None:
    device = RayDeviceEvaluator(f"ray:phone9?address={ray_cluster[0]}")
    with pytest.raises(DeviceUnavailable, match="phone9"):
        device.measure(tiny_tflite, QUICK)

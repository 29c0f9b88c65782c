"""The measuring loop shares its timed runs among several loads of the file (placements):
one load's memory placement sets its speed for as long as it lives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devicefit.deploy import bench
from devicefit.deploy.runtime import interpreter_class


class _CountingLoads:
    """The real interpreter class, counting the loads made through it."""

    def __init__(self) -> None:
        self.cls, _ = interpreter_class()
        self.loads = 0

    def __call__(self, **kwargs: object) -> object:
        self.loads += 1
        return self.cls(**kwargs)


@pytest.mark.parametrize("placements", [1, 3])
def test_timed_runs_are_shared_among_fresh_loads(
    monkeypatch: pytest.MonkeyPatch, tiny_tflite: bytes, placements: int
) -> None:
    loads = _CountingLoads()
    monkeypatch.setattr(bench, "interpreter_class", lambda: (loads, "counted"))
    spec = {"min_runs": 30, "min_seconds": 0.3, "placements": placements, "max_remeasures": 0}
    result = bench.benchmark(tiny_tflite, spec)
    assert loads.loads == placements  # the first load, then one fresh load per share
    medians = result["placement_medians_ms"]
    assert len(medians) == placements and all(m > 0 for m in medians)
    # Every load ran its share of the runs and of the time; together at least the spec's.
    assert result["count"] >= 30 and result["wall_s"] >= 0.3
    # The reported median is the pooled runs', within the loads' own medians.
    assert min(medians) <= result["median_ms"] <= max(medians)


def _measure_in_child(path: Path, spec: dict) -> dict:
    """As devices measure: the bench in a fresh process (whose peak memory starts at 0)."""
    run = subprocess.run(
        [sys.executable, "-m", "devicefit.deploy.bench", str(path), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env=bench.child_env(),
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_memory_is_one_loads_not_every_loads(tmp_path: Path) -> None:
    """A file whose packed weights take 16 MB: measured over four loads, the peak memory is
    still one load's (the later loads replace one another after the first's numbers)."""
    import keras

    from devicefit.spaces.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2048,)), keras.layers.Dense(2048)])
    path = tmp_path / "wide.tflite"
    path.write_bytes(to_tflite(model, (1, 2048)))
    spec = {"min_runs": 5, "min_seconds": 0, "warmup_seconds": 0}
    one = _measure_in_child(path, {**spec, "placements": 1})
    four = _measure_in_child(path, {**spec, "placements": 4})
    assert one["model_memory_mb"] > 12  # the packed weights are counted ...
    assert four["peak_memory_mb"] == pytest.approx(one["peak_memory_mb"], abs=6)  # ... once
    assert four["init_ms"] > 0 and four["first_inference_ms"] > 0
    assert len(four["placement_medians_ms"]) == 4

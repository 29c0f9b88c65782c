"""One Ray worker slot running 150 trials' conversions: recycling keeps its memory
bounded (the TFLite converter leaks about 4 MB per call on this 1M-parameter model,
600 MB over 150 calls without recycling)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devicefit.search.trial import TrialRequest
from devicefit.spaces.base import Plan, Step
from devicefit.tasks.base import TaskSpec

# Shares the session's Ray cluster: kept on one test worker.
pytestmark = pytest.mark.xdist_group("ray")

TRIALS = 150
FLOAT32 = Plan((Step("quantization", {"mode": "float32"}),), 0)


def _user_task(folder: Path) -> TaskSpec:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(64, 3, padding="same"),
            keras.layers.Conv2D(64, 3, padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(16),
        ]
    )
    model.save(folder / "net.keras")
    rng = np.random.default_rng(0)
    data = {}
    for split, n in (("train", 16), ("val", 8), ("test", 8)):
        data[f"x_{split}"] = rng.random((n, 32, 32, 3), dtype=np.float32)
        data[f"y_{split}"] = rng.integers(0, 16, n)
    np.savez(folder / "data.npz", **data)
    return TaskSpec(None, str(folder / "net.keras"), str(folder / "data.npz"), "accuracy")


@pytest.mark.slow
def test_worker_memory_stays_bounded_over_150_conversions(tmp_path: Path, ray_cluster: Any) -> None:
    from devicefit.search.ray_executor import RayExecutor

    executor = RayExecutor(ray_cluster[0], workers=1, task=_user_task(tmp_path), recycle_after=20)
    rss = []
    try:
        for number in range(TRIALS):
            out = executor.submit(TrialRequest(number, FLOAT32.to_dict(), executor.spec, 0)).result(
                timeout=300
            )
            assert out.error is None, out.error
            rss.append(out.worker_rss_mb)
    finally:
        executor.shutdown()
    assert all(r is not None for r in rss)
    assert rss[-1] - rss[9] <= 300, (rss[9], rss[-1])

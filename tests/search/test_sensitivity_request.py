"""A sensitivity profile shared among the study's workers: how the points are dealt out,
and that the profile a pool of workers makes is the one the driver makes alone."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from devicefit.search.executors import ProcessPoolExecutor
from devicefit.search.sensitivity_profiles import write_sensitivity
from devicefit.search.sensitivity_request import share_jobs
from devicefit.spaces import get_technique
from devicefit.spaces.sensitivity import LEVEL_NAMES, SensitivityJob
from devicefit.tasks.base import TaskSpec

DIGITS = TaskSpec("digits")


def _jobs(techniques: dict[str, int]) -> list[SensitivityJob]:
    """Every level of ``count`` units of each technique, as sensitivity_jobs lists them."""
    return [
        SensitivityJob(f"unit{u}", (f"layer{u}",), name, level, n)
        for name, count in techniques.items()
        for u in range(count)
        for n, level in enumerate(LEVEL_NAMES)
    ]


def test_every_job_once_with_a_units_levels_together() -> None:
    jobs = _jobs({"channel_pruning": 9, "quantization": 9})
    shares = share_jobs(DIGITS, jobs, workers=2)
    assert len(shares) == 12  # six per worker
    dealt = [job for share in shares for job in share.jobs]
    assert sorted(dealt, key=jobs.index) == jobs  # each exactly once
    for share in shares:
        units = {(j.technique, j.unit) for j in share.jobs}
        assert len(share.jobs) == len(units) * len(LEVEL_NAMES)  # a unit's levels together
    # The slow technique is spread out: no share holds more than its turn of it.
    quantized = [sum(j.technique == "quantization" for j in s.jobs) for s in shares]
    assert max(quantized) <= 2 * len(LEVEL_NAMES)


def test_fewer_units_than_shares_gives_one_share_per_unit() -> None:
    shares = share_jobs(DIGITS, _jobs({"lowrank": 3}), workers=4)
    assert [len(s.jobs) for s in shares] == [len(LEVEL_NAMES)] * 3
    assert share_jobs(DIGITS, [], workers=2) == []


@pytest.mark.slow
def test_pool_workers_make_the_profile_the_driver_makes_alone(tmp_path: Path) -> None:
    """Digits, channel pruning per block: the same points from two pool workers as from
    the driver's own process, saved in the same order."""
    from devicefit.tasks import load_task

    task = load_task(DIGITS)
    techniques = [get_technique("channel_pruning")]
    console = Console(file=io.StringIO())
    (tmp_path / "alone").mkdir()
    (tmp_path / "shared").mkdir()
    alone = write_sensitivity(tmp_path / "alone", task, techniques, "per-block", console)
    executor = ProcessPoolExecutor(workers=2, threads=1)
    try:
        shared = write_sensitivity(
            tmp_path / "shared", task, techniques, "per-block", console, executor, DIGITS
        )
    finally:
        executor.shutdown()
    assert shared["complete"] and shared["key"] == alone["key"]
    keys = [(p["unit"], p["technique"], p["level"]) for p in shared["points"]]
    assert keys == [(p["unit"], p["technique"], p["level"]) for p in alone["points"]]
    assert len(keys) >= 12 and all(p["error"] is None for p in shared["points"])
    for point, same in zip(shared["points"], alone["points"], strict=True):
        assert point["drop"] == pytest.approx(same["drop"], abs=100 / 256 + 1e-9)  # one example
    assert max(p["drop"] for p in shared["points"]) > 1.0

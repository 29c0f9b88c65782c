"""The measuring process keeps its heap in transparent huge pages, so a file's speed does not
depend on which 4 KiB pages its buffers got (deploy/bench.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devicefit.deploy import bench
from devicefit.evaluators.base import BenchmarkSpec
from devicefit.evaluators.local import LocalEvaluator

THP = Path(bench.THP_SETTING)


def test_child_env_asks_malloc_for_huge_pages_and_keeps_other_tunables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2")
    tunables = bench.child_env()["GLIBC_TUNABLES"].split(":")
    assert "glibc.malloc.arena_max=2" in tunables
    assert [t for t in tunables if "hugetlb" in t] == [bench.HUGE_PAGES_TUNABLE]
    monkeypatch.delenv("GLIBC_TUNABLES")
    assert bench.child_env()["GLIBC_TUNABLES"] == bench.HUGE_PAGES_TUNABLE


def _wide_dense_file() -> bytes:
    """A file whose packed weights take 16 MB: far beyond what 4 KiB TLB entries cover."""
    import keras

    from devicefit.spaces.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2048,)), keras.layers.Dense(2048)])
    return to_tflite(model, (1, 2048))


def test_a_local_measurement_runs_on_huge_pages_and_says_how_much() -> None:
    """Through the local device, as a search measures: the weights land in huge pages. Where
    the kernel has them off, the measurement says so instead of a number."""
    spec = BenchmarkSpec(min_runs=5, min_seconds=0, warmup_seconds=0, placements=1)
    measurement = LocalEvaluator().measure(_wide_dense_file(), spec)
    if not THP.exists() or "[never]" in THP.read_text():
        assert measurement.huge_pages_mb is None
        assert "huge pages" in measurement.unavailable["huge_pages_mb"]
        return
    # The 16 MB of weights (and more of the heap) in 2 MB pages; 0 without the tunable.
    assert measurement.huge_pages_mb is not None and measurement.huge_pages_mb >= 16

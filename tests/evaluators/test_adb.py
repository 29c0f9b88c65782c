"""The adb evaluator's failure modes, against the stand-in phone of fake_android.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_android import make_fake_adb

from devicefit.errors import DeviceUnavailable
from devicefit.evaluators.adb import AdbEvaluator
from devicefit.evaluators.base import BenchmarkSpec

QUICK = BenchmarkSpec(min_runs=3, min_seconds=0, warmup=1, warmup_seconds=0)


def test_phone_measurement_is_parsed_and_the_file_removed(
    tmp_path: Path, tiny_tflite: bytes
) -> None:
    adb = make_fake_adb(tmp_path)
    m = AdbEvaluator(f"adb:emulator-5554?adb={adb}").measure(tiny_tflite, QUICK)
    assert m.count >= 3 and m.median_ms > 0 and m.p95_ms is not None
    assert m.peak_memory_mb is not None and m.node == "adb:emulator-5554"
    assert not list((tmp_path / "storage").rglob("*.tflite"))  # nothing left on the phone


def test_an_unplugged_phone_is_unavailable(tmp_path: Path, tiny_tflite: bytes) -> None:
    phone = AdbEvaluator(f"adb:0123ABCD?adb={make_fake_adb(tmp_path)}")
    with pytest.raises(DeviceUnavailable, match="not found"):
        phone.ping()
    with pytest.raises(DeviceUnavailable):
        phone.measure(tiny_tflite, QUICK)


def test_no_adb_on_the_host_is_unavailable(tiny_tflite: bytes) -> None:
    with pytest.raises(DeviceUnavailable, match="adb not found"):
        AdbEvaluator("adb:emulator-5554?adb=/nonexistent/adb").measure(tiny_tflite, QUICK)


def test_a_missing_benchmark_model_is_unavailable(tmp_path: Path, tiny_tflite: bytes) -> None:
    adb = make_fake_adb(tmp_path)
    phone = AdbEvaluator(f"adb:emulator-5554?adb={adb}&benchmark_model=/data/local/tmp/nothing")
    with pytest.raises(DeviceUnavailable, match="no benchmark_model"):
        phone.measure(tiny_tflite, QUICK)


def test_an_old_benchmark_model_without_a_median_is_refused(tmp_path: Path) -> None:
    phone = AdbEvaluator(f"adb:emulator-5554?adb={make_fake_adb(tmp_path)}")
    old = {"median_ms": None, "count": 50, "p95_ms": None, "min_ms": 1.0, "std_ms": 0.1}
    with pytest.raises(DeviceUnavailable, match="no median"):
        phone._measurement(old, QUICK, None, None, 0.0, 1.0)

"""The adb evaluator's parser on benchmark_model output as published (see the README
beside the files): every number is checked against the text it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from devicefit.evaluators.benchmark_model_output import (
    BenchmarkOutputError,
    parse_benchmark_model,
)

OUTPUTS = Path(__file__).parent / "benchmark_model_outputs"


def parsed(name: str) -> dict:
    return parse_benchmark_model((OUTPUTS / name).read_text())


def test_recent_build_with_median_and_memory_delta() -> None:
    out = parsed("arm_learning_path_median.txt")
    # The timed runs (count=337), not the warm-up line above them (count=153).
    assert out["count"] == 337 and out["warmup_runs"] == 153
    assert out["median_ms"] == pytest.approx(2.781)
    assert out["p5_ms"] == pytest.approx(2.647) and out["p95_ms"] == pytest.approx(3.169)
    assert out["min_ms"] == pytest.approx(2.605) and out["max_ms"] == pytest.approx(20.356)
    assert out["mean_ms"] == pytest.approx(2.94227) and out["std_ms"] == pytest.approx(1.190)
    assert out["init_ms"] == pytest.approx(6.395)
    assert out["first_inference_ms"] == pytest.approx(2.761)
    assert out["init_memory_mb"] == pytest.approx(39.4531)
    assert out["model_memory_mb"] == pytest.approx(40.8281)
    assert "peak_memory_mb" not in out


def test_tensorflow_desktop_run_without_median() -> None:
    out = parsed("tf_issue_73862_desktop.txt")
    assert out["count"] == 74 and out["warmup_runs"] == 37
    assert out["median_ms"] is None and out["p95_ms"] is None  # this build prints none
    assert out["min_ms"] == pytest.approx(13.105) and out["mean_ms"] == pytest.approx(13.5202)
    assert out["std_ms"] == pytest.approx(0.470)
    assert out["init_ms"] == pytest.approx(12.75) and out["first_inference_ms"] == 14.744


def test_older_android_build_with_peak_memory_line() -> None:
    out = parsed("tf_issue_42507_android.txt")
    assert out["count"] == 50 and out["min_ms"] == pytest.approx(32.641)
    assert out["max_ms"] == pytest.approx(34.005) and out["mean_ms"] == pytest.approx(33.2094)
    assert out["init_memory_mb"] == 0 and out["model_memory_mb"] == pytest.approx(12.8672)


def test_raspberry_pi_run_with_memory_delta() -> None:
    out = parsed("xnnpack_issue_999_raspberry_pi.txt")
    assert out["count"] == 50 and out["mean_ms"] == pytest.approx(55.0432)
    assert out["init_memory_mb"] == pytest.approx(8.97656)
    assert out["model_memory_mb"] == pytest.approx(18.7227)


def test_periodic_peak_memory_line() -> None:
    out = parsed("chromiumos_peak_memory.txt")
    assert out["count"] == 1061 and out["peak_memory_mb"] == pytest.approx(93.2383)
    assert out["min_ms"] == pytest.approx(54.669)


def test_logcat_line_in_scientific_notation() -> None:
    out = parsed("tf_android_readme_logcat.txt")
    assert out["count"] is None  # logcat grep kept only the summary line
    assert out["init_ms"] == pytest.approx(1007.529)
    assert out["mean_ms"] == pytest.approx(1.68792)


def test_scientific_notation_in_statistics() -> None:
    text = "count=10 first=2653894 curr=2709263 min=2640862 max=3025403 avg=2.71985e+06 std=105101"
    assert parse_benchmark_model(text)["mean_ms"] == pytest.approx(2719.85)


def test_text_without_statistics_is_an_error() -> None:
    with pytest.raises(BenchmarkOutputError):
        parse_benchmark_model("ERROR: Could not open 'model.tflite'.\nAborted")

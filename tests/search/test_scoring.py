"""Scoring a measured candidate (search/scoring.py) and the record a trial stores
(search/trial_metrics.py): pure functions, checked without a study."""

from __future__ import annotations

import pytest

from devicefit.evaluators.base import Measurement
from devicefit.evaluators.metrics import get_metric
from devicefit.search.scoring import Unscored, score_candidate
from devicefit.search.trial import TrialOutput
from devicefit.search.trial_metrics import TrialMetrics

OBJECTIVES = [
    {"name": "accuracy", "direction": "maximize"},
    {"name": "latency_pi", "direction": "minimize", "device": "pi"},
    {"name": "latency_phone", "direction": "minimize", "device": "phone"},
    {"name": "peak_memory_pi", "direction": "minimize", "device": "pi", "field": "peak_memory_mb"},
]
INFO = {"objectives": OBJECTIVES, "max_metric_drop": 1.0, "reference_metric": 97.0}


def _measured(device: str, median: float, memory: float | None) -> Measurement:
    m = Measurement(median, median, median, 0.1, 50, 1, device=device, peak_memory_mb=memory)
    if memory is None:
        m.unavailable["peak_memory_mb"] = "no /proc here"
    return m


def _candidate(**changes: object) -> TrialOutput:
    out = TrialOutput(7, tflite=b"x", metric=96.25, size_bytes=1000, macs=5, params=3)
    out.tflite_sha256, out.finetune = "abc", {"drop_before": 4.0, "drop_after": 0.75}
    for key, value in changes.items():
        setattr(out, key, value)
    return out


def _no_pooling(sha: str, device: str, fresh: float) -> tuple[float, int]:
    raise AssertionError("only a file measured before is pooled")


def test_values_follow_the_objectives_and_constraints_hold_drop_and_limits() -> None:
    measured = {"pi": _measured("pi-1", 4.0, 30.0), "phone": _measured("phone-1", 2.0, 50.0)}
    scored = score_candidate(
        _candidate(), measured, INFO, get_metric("accuracy"), {"peak_memory_mb": 40.0}, _no_pooling
    )
    assert scored.values == [96.25, 4.0, 2.0, 30.0]
    # The drop from 97.0 is 0.75, within a budget of 1.0; the worst device's memory is
    # 50 MB against a 40 MB limit.
    assert scored.constraints == {"metric_drop": -0.25, "peak_memory_mb": 10.0}
    assert scored.metrics.metric_drop == 0.75 and scored.metrics.latency == measured


def test_a_file_measured_before_is_told_its_pooled_median() -> None:
    measured = {"pi": _measured("pi-1", 4.0, 30.0), "phone": _measured("phone-1", 2.0, 50.0)}
    seen = []

    def pooled(sha: str, device: str, fresh: float) -> tuple[float, int]:
        seen.append((sha, device, fresh))
        return fresh + 1.0, 3

    scored = score_candidate(
        _candidate(same_as=2), measured, INFO, get_metric("accuracy"), {}, pooled
    )
    assert seen == [("abc", "pi", 4.0), ("abc", "phone", 2.0)]
    assert scored.values == [96.25, 5.0, 3.0, 30.0]  # memory is not pooled
    assert scored.metrics.pooled == {
        "pi": {"median_ms": 5.0, "measurements": 3},
        "phone": {"median_ms": 3.0, "measurements": 3},
    }


def test_a_missing_reading_names_the_device_and_why() -> None:
    no_memory = {"pi": _measured("pi-1", 4.0, None), "phone": _measured("phone-1", 2.0, 50.0)}
    with pytest.raises(Unscored, match="pi-1 gave no peak_memory_pi: no /proc here"):
        score_candidate(_candidate(), no_memory, INFO, get_metric("accuracy"), {}, _no_pooling)
    info = {**INFO, "objectives": OBJECTIVES[:3]}
    with pytest.raises(Unscored, match="pi-1 gave no peak_memory_mb"):
        score_candidate(
            _candidate(),
            no_memory,
            info,
            get_metric("accuracy"),
            {"peak_memory_mb": 9.0},
            _no_pooling,
        )


def test_the_stored_record_reads_back_as_it_was_written() -> None:
    measured = {"pi": _measured("pi-1", 4.0, 30.0), "phone": _measured("phone-1", 2.0, 50.0)}
    out = _candidate(ops={"CONV_2D": 3}, notes=["n"], node="node-1", worker_rss_mb=512.0)
    record = score_candidate(out, measured, INFO, get_metric("accuracy"), {}, _no_pooling).metrics
    stored = record.to_dict()
    assert stored["latency"]["pi"]["median_ms"] == 4.0 and stored["built_on"] == "node-1"
    assert stored["finetune"] == {"drop_before": 4.0, "drop_after": 0.75}
    assert TrialMetrics.from_dict(stored) == record
    # Keys it does not know (a newer devicefit's) are ignored; an older record lacking
    # the later fields reads with their defaults.
    older = {k: v for k, v in stored.items() if k not in ("ops", "worker_rss_mb")}
    read = TrialMetrics.from_dict({**older, "future": 1})
    assert read.ops == {} and read.worker_rss_mb is None and read.macs == 5

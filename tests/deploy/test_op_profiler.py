"""LiteRT's op-level profiler, driven through its C API: the summary of its events, and a
file it cannot load. (Real profiles of real files: tests/spaces/test_layer_times.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from devicefit.deploy import op_profiler
from devicefit.deploy.op_profiler import (
    OpProfileUnavailable,
    profile_in_child,
    profile_ops,
    summarise,
)


def _event(event_type: int, tag: str, meta: int = 0, us: int = 0) -> SimpleNamespace:
    return SimpleNamespace(event_type=event_type, tag=tag.encode(), metadata1=meta, elapsed_us=us)


def _run(us: int) -> list[SimpleNamespace]:
    return [
        _event(1, "Invoke", us=us),
        _event(8, "Convolution (NHWC, F32) IGEMM", 0, us // 2),
        _event(8, "Max Pooling (NHWC, F32)", 1, 10),
        _event(2, "RESHAPE", 2, 5),
        _event(8, "Fully Connected (NC, F32) GEMM", 0, us // 4),
        _event(32, "Invoke", 2**64 - 1),  # telemetry, not a run
    ]


def test_summary_numbers_partitions_and_trims_a_disturbed_run() -> None:
    events = [e for _ in range(9) for e in _run(1000)] + _run(9000)
    profile = summarise(events, 10)
    assert [(o.source, o.index, o.partition) for o in profile.ops] == [
        ("delegate", 0, 0),
        ("delegate", 1, 0),
        ("tflite", 2, None),
        ("delegate", 0, 1),
    ]
    # The one disturbed run (9 ms) is cut with the tenth at each end.
    assert profile.run_ms == pytest.approx(1.0)
    assert profile.ops[0].ms == pytest.approx(0.5) and profile.ops[3].ms == pytest.approx(0.25)


def test_ops_add_up_to_the_run_when_many_runs_are_disturbed_each_in_another_op() -> None:
    """A host that disturbs three runs in ten, each time in another op: the ops' times are
    means over the same runs as the run's own, so they still add up to it less the run's
    overhead (what no op of a run accounts for: 235 us of each 1000)."""
    events = []
    for n in range(100):
        run = _run(1000)
        if n % 10 in (1, 4, 7):
            hit = run[(1, 2, 4)[n % 3]]  # the conv, the pooling or the dense op
            hit.elapsed_us += 4000
            run[0].elapsed_us += 4000
        events += run
    profile = summarise(events, 100)
    total = sum(op.ms for op in profile.ops)
    assert profile.run_ms > 1.5  # the disturbed runs left in the central eight tenths
    assert total == pytest.approx(profile.run_ms - 0.235)


def test_runs_that_show_different_ops_are_refused() -> None:
    other = _run(1000)
    other[2] = _event(8, "Average Pooling (NHWC, F32)", 1, 10)
    with pytest.raises(OpProfileUnavailable, match="different ops"):
        summarise(_run(1000) + other, 2)
    with pytest.raises(OpProfileUnavailable, match="recorded 1 runs"):
        summarise(_run(1000), 2)


def test_a_file_litert_cannot_load_is_unavailable_not_a_crash() -> None:
    with pytest.raises(OpProfileUnavailable, match="LiteRtCreateModelFromBuffer"):
        profile_ops(b"TFL3" + b"\0" * 64, threads=1)


def test_a_litert_older_than_the_c_api_driven_here_is_not_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Older builds have other signatures under the same symbol names: calling them through
    ctypes would be undefined behaviour, so the profiler says why instead."""
    monkeypatch.setattr(op_profiler, "_litert_version", lambda: (2, 1, 5))
    with pytest.raises(OpProfileUnavailable, match=r"2\.1\.5 is older than 2\.1\.6"):
        profile_ops(b"TFL3" + b"\0" * 64, threads=1)


def test_the_child_process_reports_a_failure_as_a_reason(tiny_tflite: bytes) -> None:
    broken = profile_in_child(b"TFL3" + b"\0" * 64, threads=1, runs=5)
    assert "LiteRtCreateModelFromBuffer" in broken["unavailable"]
    good = profile_in_child(tiny_tflite, threads=1, runs=5)
    assert good["runs"] == 5 and good["ops"] and good["run_ms"] > 0

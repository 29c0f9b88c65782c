"""The built-in digits task: data, cached model, and the speed/accuracy it is meant to have."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from devicefit.tasks import Task, TaskSpec, clear_loaded_tasks, digits, load_task
from devicefit.tasks.cache import task_cache_dir


def test_splits_have_the_promised_shapes(digits_task: Task) -> None:
    data = digits_task.data
    sizes = [len(data.x_train), len(data.x_val), len(data.x_test)]
    assert sum(sizes) == 1797 and sizes == [1078, 359, 360]
    for x, y in (
        (data.x_train, data.y_train),
        (data.x_val, data.y_val),
        (data.x_test, data.y_test),
    ):
        assert x.shape[1:] == (32, 32, 1) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert y.shape == (len(x),)
    assert digits_task.input_shape == (1, 32, 32, 1)
    assert digits_task.metric.name == "accuracy"


def test_splits_are_disjoint_and_stratified(digits_task: Task) -> None:
    data = digits_task.data
    # every digits image is unique, so the bytes identify a sample
    rows = [{x.tobytes() for x in xs} for xs in (data.x_train, data.x_val, data.x_test)]
    assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]
    whole = np.bincount(np.concatenate([data.y_train, data.y_val, data.y_test])) / 1797
    for y in (data.y_train, data.y_val, data.y_test):
        assert np.abs(np.bincount(y, minlength=10) - whole * len(y)).max() <= 1.0


def test_second_load_reuses_the_cached_model(
    digits_task: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    (path,) = task_cache_dir("digits").glob("*.keras")
    before = path.stat().st_mtime_ns

    def no_training(*args: object) -> None:
        raise AssertionError("the cached model should have been loaded, not retrained")

    monkeypatch.setattr(digits, "train_model", no_training)
    clear_loaded_tasks()  # force a real load from disk instead of this process's copy
    try:
        again = load_task(TaskSpec(builtin="digits"))
    finally:
        clear_loaded_tasks()
    assert path.stat().st_mtime_ns == before
    x = digits_task.data.x_test[:8]
    np.testing.assert_allclose(again.model.predict(x, verbose=0),
                               digits_task.model.predict(x, verbose=0), atol=1e-5)  # fmt: skip


@pytest.mark.exclusive  # a lower bound on latency: another test's load must not help it pass
@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="the 1 ms bound is stated for x86"
)
def test_float32_tflite_takes_at_least_a_millisecond_on_one_thread(digits_tflite: bytes) -> None:
    # A requirement, not a benchmark: compression must have time to save, so the untouched
    # file takes >= 1 ms per image on one thread of a 2-core x86 machine, measured exactly as
    # a search measures it (a fresh child process, warm-up, then timed runs).
    from devicefit.evaluators.base import BenchmarkSpec
    from devicefit.evaluators.local import LocalEvaluator

    measured = LocalEvaluator().measure(digits_tflite, BenchmarkSpec(threads=1))
    assert measured.threads == 1 and measured.count >= 50
    # The fastest run too: a lower bound the other test worker's load cannot help pass.
    assert measured.median_ms >= 1.0 and measured.min_ms >= 1.0, measured.to_dict()


def test_tflite_test_accuracy_is_high(digits_task: Task, digits_tflite: bytes) -> None:
    from devicefit.evaluators.tflite_predict import predict

    accuracy = digits_task.metric(
        digits_task.data.y_test, predict(digits_tflite, digits_task.data.x_test)
    )
    assert accuracy >= 96.0


def test_fidelity_override_relabels_with_the_model(digits_task: Task) -> None:
    task = load_task(TaskSpec(builtin="digits", metric="fidelity"))
    assert task.metric.name == "fidelity"
    x = digits_task.data.x_test
    expected = digits_task.model.predict(x, verbose=0).argmax(-1)
    np.testing.assert_array_equal(task.data.y_test, expected)

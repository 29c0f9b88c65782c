"""load_task: built-in names, metric overrides, and the per-process cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devicefit.errors import UsageError
from devicefit.tasks import BUILTIN_TASKS, TaskSpec, clear_loaded_tasks, load_task


def test_builtin_names() -> None:
    assert list(BUILTIN_TASKS) == ["digits", "sr"]


def test_unknown_builtin_task() -> None:
    with pytest.raises(UsageError) as info:
        load_task(TaskSpec(builtin="x"))
    assert str(info.value) == "--task: unknown task 'x'; choose one of digits, sr"


@pytest.mark.parametrize(
    ("task", "metric", "match"),
    [
        (
            "digits",
            "psnr",
            "^--metric: 'psnr' does not fit task 'digits'.*accuracy, top5, fidelity$",
        ),
        ("sr", "accuracy", "^--metric: 'accuracy' does not fit task 'sr'.*psnr, mse$"),
        ("digits", "f1", "^--metric: unknown metric 'f1'"),
    ],
)
def test_builtin_metric_override_is_checked_before_loading(
    task: str, metric: str, match: str
) -> None:
    with pytest.raises(UsageError, match=match):
        load_task(TaskSpec(builtin=task, metric=metric))


def test_builtin_and_user_model_are_exclusive() -> None:
    with pytest.raises(UsageError, match="^--task: "):
        load_task(TaskSpec(builtin="digits", model_path="m.keras", data_path="d.npz"))


def test_nothing_to_load() -> None:
    with pytest.raises(UsageError, match="^--model: "):
        load_task(TaskSpec())


def test_tasks_are_loaded_once_per_process(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    x = np.zeros((4, 3), np.float32)
    np.savez(
        tmp_path / "d.npz", x_train=x, y_train=np.zeros(4, int), x_val=x, y_val=np.zeros(4, int)
    )
    spec = TaskSpec(model_path=str(tmp_path / "m.keras"), data_path=str(tmp_path / "d.npz"))
    first = load_task(spec)
    assert load_task(TaskSpec(**vars(spec))) is first
    clear_loaded_tasks()
    assert load_task(spec) is not first
    clear_loaded_tasks()


def test_values_kept_per_task_are_computed_once_for_each_task_object() -> None:
    from devicefit.evaluators.metrics import get_metric
    from devicefit.tasks.base import Splits, Task, once_per_task

    def task(name: str) -> Task:
        empty = np.zeros((1, 1), np.float32)
        splits = Splits(empty, empty, empty, empty, empty, empty)
        return Task(name, None, splits, get_metric("accuracy"), (1, 1))

    cache: dict = {}
    calls: list[str] = []

    def value_of(t: Task) -> str:
        return once_per_task(cache, t, lambda: calls.append(t.name) or t.name)

    first = task("a")
    assert value_of(first) == value_of(first) == "a" and calls == ["a"]
    # A task with the id of one the cache holds (as a freed task's id is reused) is
    # another task: it gets its own value.
    other = task("b")
    cache[id(other)] = cache.pop(id(first))
    assert value_of(other) == "b" and calls == ["a", "b"]

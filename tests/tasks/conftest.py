"""Built-in tasks loaded once per session; the root conftest points DEVICEFIT_CACHE at a
session folder, so each built-in model trains at most once per test run."""

from __future__ import annotations

import contextlib
import io

import pytest

from devicefit.quiet import silence_tensorflow

silence_tensorflow()

from devicefit.tasks import Task, TaskSpec, load_task  # noqa: E402


@pytest.fixture(scope="session")
def digits_task() -> Task:
    return load_task(TaskSpec(builtin="digits"))


@pytest.fixture(scope="session")
def sr_task() -> Task:
    return load_task(TaskSpec(builtin="sr"))


def tflite_of(task: Task) -> bytes:
    from devicefit.spaces.convert import to_tflite

    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its SavedModel
        return to_tflite(task.model, task.input_shape)


@pytest.fixture(scope="session")
def digits_tflite(digits_task: Task) -> bytes:
    return tflite_of(digits_task)


@pytest.fixture(scope="session")
def sr_tflite(sr_task: Task) -> bytes:
    return tflite_of(sr_task)

"""Tasks: the model to compress with its data and metric, built-in or the user's own.

Trial workers call :func:`load_task` for every trial, so each process keeps the
tasks it has loaded; the trained built-in models are cached on disk as well.
"""

from __future__ import annotations

from dataclasses import replace

from devicefit.errors import UsageError
from devicefit.evaluators.custom_metric import check_on_model, is_custom_metric
from devicefit.evaluators.metrics import METRICS, get_metric
from devicefit.tasks.base import Splits, Task, TaskSpec, take

__all__ = [
    "BUILTIN_TASKS",
    "Splits",
    "Task",
    "TaskSpec",
    "clear_loaded_tasks",
    "forget_task",
    "load_task",
]

# name -> the kind of metric its model produces (classification logits, or images)
BUILTIN_TASKS: dict[str, str] = {"digits": "classification", "sr": "regression"}

_loaded: dict[TaskSpec, Task] = {}


def load_task(spec: TaskSpec) -> Task:
    """The task ``spec`` names, loaded once per process.

    Args:
        spec: a built-in task name or the user's model and data files, with the metric
            and fine-tuning settings to apply.

    Returns:
        The loaded task, the same object for every later call with an equal ``spec``
        until :func:`forget_task` or :func:`clear_loaded_tasks`.

    Raises:
        UsageError: the spec is inconsistent (a built-in task with ``--model``/``--data``,
            an unknown task, a metric that does not fit it), the user's model, data or
            metric fails its checks, or a metric of the user's own fails on the original
            model's validation outputs.
    """
    if spec not in _loaded:
        task = _load(spec)
        if spec.finetune_samples is not None:
            task = replace(task, finetune_samples=spec.finetune_samples)
        if task.metric.source is not None:
            _check_custom_metric(task)
        _loaded[spec] = task
    return _loaded[spec]


def forget_task(spec: TaskSpec) -> None:
    """Forget the task ``spec`` names in this process: the next load reads it again.

    Args:
        spec: the spec the task was loaded by; one never loaded is ignored.
    """
    _loaded.pop(spec, None)


def clear_loaded_tasks() -> None:
    """Forget this process's loaded tasks (the on-disk model cache stays)."""
    _loaded.clear()


def _load(spec: TaskSpec) -> Task:
    if spec.builtin and (spec.model_path or spec.data_path):
        raise UsageError("--task: give either a built-in --task or --model/--data, not both")
    if not spec.builtin:
        from devicefit.tasks.user import load_user_task

        return load_user_task(spec)
    if spec.builtin and spec.image_size is not None:
        raise UsageError(
            f"--image-size: only for a --data folder of images, not --task {spec.builtin}"
        )
    if spec.builtin not in BUILTIN_TASKS:
        raise UsageError(
            f"--task: unknown task {spec.builtin!r}; choose one of {', '.join(BUILTIN_TASKS)}"
        )
    if spec.metric is not None and not is_custom_metric(spec.metric):
        _check_builtin_metric(spec.builtin, spec.metric)
    if spec.builtin == "digits":
        from devicefit.tasks import digits

        task = digits.load(spec.metric)
    else:
        from devicefit.tasks import sr

        task = sr.load(spec.metric)
    if spec.metric == "fidelity":
        from devicefit.tasks.user import relabel_with_model

        task = replace(task, data=relabel_with_model(task.model, task.data))
    return task


def _check_builtin_metric(task: str, name: str) -> None:
    metric = get_metric(name)  # unknown names fail here with the list of metrics
    kind = BUILTIN_TASKS[task]
    if metric.kind != kind:
        fitting = ", ".join(m.name for m in METRICS.values() if m.kind == kind)
        raise UsageError(
            f"--metric: {name!r} does not fit task {task!r} ({kind}); choose one of {fitting}"
        )


def _check_custom_metric(task: Task) -> None:
    """A user's metric on the original model's validation outputs: a function that fails
    there would fail every candidate, so the study does not start (UsageError)."""
    from devicefit.search.sensitivity_request import profile_inputs
    from devicefit.spaces.eager_predict import model_outputs

    outputs = model_outputs(task.model, task.data.x_val)
    check_on_model(task.metric, task.data.y_val, outputs)
    # The profiles (--sensitivity) score the first validation samples alone.
    x, y = profile_inputs(task)
    check_on_model(task.metric, y, take(outputs, slice(None, len(x))))

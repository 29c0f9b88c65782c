"""A Task: the trained model to compress, its data splits, its metric and shipped input shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from devicefit.evaluators.metrics import Metric

if TYPE_CHECKING:
    import keras


@dataclass
class Splits:
    """Inputs and labels per split; a model with several outputs has a dict of labels
    per split, by output name."""

    x_train: np.ndarray
    y_train: Any
    x_val: np.ndarray
    y_val: Any
    x_test: np.ndarray
    y_test: Any


def take(labels: Any, index: Any) -> Any:
    """``labels[index]``, for one array or a dict of them (a model with several outputs).

    Args:
        labels: a split's labels: one array, or a dict of arrays by output name.
        index: what picks the rows (an int, a slice, an index array or a mask).

    Returns:
        The picked rows, in the same form as ``labels`` (a dict stays a dict).
    """
    if isinstance(labels, dict):
        return {name: values[index] for name, values in labels.items()}
    return labels[index]


@dataclass
class Task:
    """Everything a trial needs to know about the model being compressed.

    ``input_shape`` is the shape the shipped TFLite file takes, batch 1 included
    (fully convolutional models are trained on patches but ship at a fixed size).
    ``info`` carries task facts worth reporting (e.g. the bicubic PSNR of ``sr``).
    """

    name: str
    model: keras.Model
    data: Splits
    metric: Metric
    input_shape: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)
    # Fine-tuning a candidate uses at most this many training samples (a fixed random
    # subset): SRCNN's 64x64 patches cost ~0.3 s per batch, and a search fine-tunes
    # dozens of candidates. None: all of them.
    finetune_samples: int | None = None
    # A model with several outputs: each output's kind ("classification" or "regression"),
    # by name, so fine-tuning trains each against its own labels. None: one output.
    output_kinds: dict[str, str] | None = None

    @cached_property  # read several times per candidate; the split never changes
    def calibration(self) -> np.ndarray:
        """Training inputs for full-integer calibration and BatchNorm re-estimation (never
        the test split): ``CALIBRATION_SAMPLES`` of them, a fixed random subset in their
        original order. Not the first ones: a user's ``x_train`` sorted by class would
        calibrate int8 ranges and re-estimate BatchNorm statistics on one class."""
        inputs = calibration_subset(self.data.x_train)
        inputs.setflags(write=False)  # one array, read by every candidate of the process
        return inputs


CALIBRATION_SAMPLES = 128


def calibration_subset(x_train: np.ndarray, count: int = CALIBRATION_SAMPLES) -> np.ndarray:
    """``count`` inputs of ``x_train`` drawn without replacement by a fixed seed, kept in
    their order (all of them when there are fewer), as float32.

    Args:
        x_train: the task's training inputs.
        count: how many to draw.

    Returns:
        A new float32 array of at most ``count`` rows, the same on every call.
    """
    if len(x_train) <= count:
        return x_train.astype(np.float32)
    chosen = np.sort(np.random.default_rng(0).choice(len(x_train), size=count, replace=False))
    return x_train[chosen].astype(np.float32)


T = TypeVar("T")


def once_per_task(cache: dict[int, tuple[Task, Any]], task: Task, compute: Callable[[], T]) -> T:
    """``compute()`` once per task object in this process. Tasks are unhashable dataclasses,
    so ``cache`` is keyed by identity and keeps the task: a freed task's id, reused by a
    new task, must not hand that one the old value.

    Args:
        cache: the caller's module-level dict, one per kind of value; filled here.
        task: the task the value belongs to.
        compute: makes the value; called only when ``cache`` has none for ``task``.

    Returns:
        The value ``compute`` gave for this task object, computed now or earlier.
    """
    entry = cache.get(id(task))
    if entry is None or entry[0] is not task:
        entry = cache[id(task)] = (task, compute())
    return entry[1]


@dataclass(frozen=True)
class TaskSpec:
    """How to load a task in any process: a built-in name, or a user model + data file."""

    builtin: str | None = None
    model_path: str | None = None
    data_path: str | None = None
    metric: str | None = None  # None: the built-in task's own metric
    finetune_samples: int | None = None  # None: the task's own (Task.finetune_samples)
    image_size: tuple[int, int] | None = None  # a --data folder's images: (height, width)
    output: str | None = None  # the output a built-in metric scores (several outputs)

    def label(self) -> str:
        """A short name for the task in reports and file names.

        Returns:
            The built-in task's name, else the model file's name without its suffix.
        """
        if self.builtin:
            return self.builtin
        from pathlib import Path

        return Path(self.model_path or "model").stem

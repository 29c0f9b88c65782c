"""The inputs int8 calibration and BatchNorm re-estimation see: a fixed random subset of
the training split, so a split sorted by class still calibrates on every class."""

from __future__ import annotations

import numpy as np

from devicefit.evaluators.metrics import get_metric
from devicefit.tasks.base import CALIBRATION_SAMPLES, Splits, Task, calibration_subset


def _sorted_task(per_class: int, classes: int = 3) -> Task:
    """A task whose training inputs are sorted by class: class ``c``'s inputs all equal c."""
    x = np.repeat(np.arange(classes, dtype=np.float64), per_class)[:, None] * np.ones((1, 4))
    y = np.repeat(np.arange(classes), per_class)
    splits = Splits(x, y, x[:2], y[:2], x[:2], y[:2])
    return Task("sorted", None, splits, get_metric("accuracy"), (1, 4))


def test_a_training_split_sorted_by_class_calibrates_on_every_class() -> None:
    task = _sorted_task(per_class=100)
    calibration = task.calibration
    assert calibration.shape == (CALIBRATION_SAMPLES, 4) and calibration.dtype == np.float32
    # The first 128 inputs would hold classes 0 and 1 only.
    counts = np.bincount(calibration[:, 0].astype(int), minlength=3)
    assert (counts >= 30).all(), counts
    # The same inputs every time (every trial's int8 file is calibrated alike), in order.
    assert np.array_equal(calibration, task.calibration)
    assert (np.diff(calibration[:, 0]) >= 0).all()


def test_a_small_training_split_calibrates_on_all_of_it() -> None:
    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    assert np.array_equal(calibration_subset(x), x.astype(np.float32))
    assert len(calibration_subset(np.zeros((500, 2)), count=7)) == 7

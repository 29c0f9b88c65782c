"""Fine-tuning: distillation targets, a fixed training subset, best-epoch selection."""

from __future__ import annotations

import keras
import numpy as np

from devicefit.evaluators.metrics import get_metric
from devicefit.search.finetune import (
    PATIENCE,
    finetune,
    steps_per_epoch,
    training_subset,
)
from devicefit.tasks.base import Splits, Task


def _task(samples: int | None = None, lr_model: keras.Model | None = None) -> Task:
    rng = np.random.default_rng(0)
    x = rng.random((200, 6), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)  # learnable from one feature
    keras.utils.set_random_seed(0)
    model = lr_model or keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)]
    )
    data = Splits(x[:120], y[:120], x[120:160], y[120:160], x[160:], y[160:])
    return Task("toy", model, data, get_metric("accuracy"), (1, 6), finetune_samples=samples)


def test_subset_is_fixed_and_bounded() -> None:
    task = _task(samples=50)
    first = training_subset(task)
    assert len(first) == 50 and len(set(first)) == 50
    assert np.array_equal(first, training_subset(task))  # same every call and process
    assert steps_per_epoch(task) == 2  # 50 samples, batches of 32
    assert len(training_subset(_task())) == 120


def test_keeps_the_best_validation_epoch() -> None:
    task = _task()
    student = keras.models.clone_model(task.model)
    student.set_weights([w * 0 for w in task.model.get_weights()])  # a broken candidate
    before = task.metric(task.data.y_val, student.predict(task.data.x_val, verbose=0))
    log = finetune(student, task, epochs=3, callbacks=[], patience=3)
    scores = log["val_scores"]
    assert len(scores) == 4  # before training, then after each epoch
    after = task.metric(task.data.y_val, student.predict(task.data.x_val, verbose=0))
    assert scores[0] == before
    assert after == max(scores)  # the restored weights are the best epoch's


def test_stops_when_the_validation_metric_stops_improving() -> None:
    task = _task()
    student = keras.models.clone_model(task.model)
    student.set_weights([w * 0 for w in task.model.get_weights()])  # stuck at chance
    log = finetune(student, task, epochs=8, callbacks=[])
    scores = log["val_scores"]
    assert log["epochs_run"] < 8
    best = max(range(len(scores)), key=lambda n: (scores[n], -n))  # the first best
    # It stopped exactly PATIENCE epochs after the last improvement.
    assert log["epochs_run"] == best + PATIENCE
    # Without keep_best (a weights technique's schedule must finish) every epoch runs.
    again = keras.models.clone_model(task.model)
    again.set_weights([w * 0 for w in task.model.get_weights()])
    assert finetune(again, task, epochs=4, callbacks=[], keep_best=False)["epochs_run"] == 4

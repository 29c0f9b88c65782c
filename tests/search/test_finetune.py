"""Fine-tuning: distillation targets, a fixed training subset, best-epoch selection, and
more epochs only for a structural change still gaining and still over the budget."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from devicefit.evaluators.metrics import get_metric
from devicefit.search.extra_epochs import MAX_EXTRA, extra_epochs
from devicefit.search.finetune import (
    PATIENCE,
    finetune,
    steps_per_epoch,
    training_subset,
)
from devicefit.search.rejection import validation_drop
from devicefit.search.trial import _finetune_longer, _keras_file
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
    assert log["kept_score"] == after  # and the score returned is theirs


def test_a_start_score_given_is_the_one_to_beat_and_not_scored_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from devicefit.spaces import eager_predict as inference

    task = _task()
    student = keras.models.clone_model(task.model)
    student.set_weights([w * 0 for w in task.model.get_weights()])  # at chance
    start = [w.copy() for w in student.get_weights()]
    calls = []
    real = inference.eager_predict

    def counted(model: keras.Model, x: np.ndarray) -> np.ndarray:
        calls.append(model is student and x is task.data.x_val)
        return real(model, x)

    monkeypatch.setattr(inference, "eager_predict", counted)
    # Told a score no epoch can reach: the starting weights stay the best, and are restored.
    log = finetune(student, task, epochs=2, callbacks=[], patience=3, start_score=100.0)
    assert log["val_scores"][0] == 100.0 and log["kept_score"] == 100.0
    # Scored (the student, on the validation split) after each epoch, never before.
    assert calls == [True] * log["epochs_run"] and log["epochs_run"] == 2
    assert all(np.array_equal(a, b) for a, b in zip(student.get_weights(), start, strict=True))


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


def test_more_epochs_only_where_they_can_bring_a_structural_change_within_the_budget() -> None:
    # Half the MACs gone, 2 planned epochs, 6 points over a budget of 1 after recovering 10.
    assert extra_epochs(2, 0.5, drop_before=17.0, drop_after=7.0, budget=1.0) == 2
    assert extra_epochs(2, 0.25, 17.0, 7.0, 1.0) == 1  # a lighter change: fewer
    assert extra_epochs(3, 1.0, 17.0, 7.0, 1.0) == MAX_EXTRA * 3  # capped
    assert extra_epochs(2, 0.5, 17.0, 0.5, 1.0) == 0  # already within the budget
    assert extra_epochs(2, 0.5, 10.0, 7.0, 1.0) == 0  # 6 over, only 3 recovered: hopeless
    assert extra_epochs(2, 0.0, 17.0, 7.0, 1.0) == 0  # nothing structural removed
    assert extra_epochs(0, 0.5, 17.0, 7.0, 1.0) == 0  # the plan asked for no fine-tuning


def test_fine_tuning_says_whether_it_was_still_improving() -> None:
    task = _task()
    student = keras.models.clone_model(task.model)
    student.set_weights([w * 0 for w in task.model.get_weights()])  # stuck at chance
    assert finetune(student, task, epochs=3, callbacks=[], patience=3)["improving"] is False
    learner = keras.models.clone_model(task.model)  # fresh weights on a learnable task
    log = finetune(learner, task, epochs=3, callbacks=[], patience=3)
    assert log["improving"] == (log["val_scores"][-1] > max(log["val_scores"][:-1]))
    # Without best-epoch selection nothing is scored, so nothing says it was improving.
    unscored = finetune(learner, task, epochs=1, callbacks=[], keep_best=False)
    assert unscored["improving"] is False and unscored["kept_score"] is None


def test_a_candidate_over_the_budget_and_still_gaining_fine_tunes_longer() -> None:
    task = _task()
    task.model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    task.model.fit(task.data.x_train, task.data.y_train, epochs=40, verbose=0)
    student = keras.models.clone_model(task.model)  # re-initialised: far from the teacher
    drop = validation_drop(student, task)
    assert drop > 10  # the trained teacher is far better on the validation split
    record = {"epochs": 2, "macs_removed": 0.5, "drop_before": 3 * drop}
    _finetune_longer(student, task, budget=1.0, after=drop, record=record)
    assert record["epochs_extra"] == 2 and 1 <= record["epochs_extra_run"] <= 2
    assert validation_drop(student, task) <= drop  # the best epoch is kept: never worse
    # Within the budget already: not one epoch more.
    within = {"epochs": 2, "macs_removed": 0.5, "drop_before": 3 * drop}
    now = validation_drop(student, task)
    _finetune_longer(student, task, budget=100.0, after=now, record=within)
    assert "epochs_extra" not in within
    # A plan already fine-tuned for its most epochs in all earns none on top; one with
    # room for one more gets that one.
    capped = {"epochs": 2, "macs_removed": 0.5, "drop_before": 3 * drop}
    _finetune_longer(student, task, 1.0, now + 5.0, capped, max_epochs=2)
    assert "epochs_extra" not in capped
    _finetune_longer(student, task, 1.0, now + 5.0, capped, max_epochs=3)
    assert capped["epochs_extra"] == 1


def test_a_fine_tuned_model_is_kept_as_a_keras_file_that_loads(tmp_path) -> None:
    # Fine-tuning compiles the candidate with a distillation loss of ours, which load_model
    # cannot rebuild: the stored file must hold the model without that compile state.
    task = _task()
    model = keras.models.clone_model(task.model)
    model.set_weights(task.model.get_weights())
    finetune(model, task, epochs=1, callbacks=[])
    assert model.compiled
    path = tmp_path / "model.keras"
    path.write_bytes(_keras_file(model, notes := []))
    assert notes == []
    loaded = keras.models.load_model(path)
    x = task.data.x_val[:8]
    assert np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert not loaded.compiled  # no optimizer state saved beside the weights

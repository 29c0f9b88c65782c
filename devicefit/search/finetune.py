"""Fine-tuning with knowledge distillation from the original model: a warmed-up cosine
learning rate, early stopping on the validation metric keeping the best epoch, and more
epochs for a heavier structural change that is still gaining but not yet within the
budget (search/extra_epochs.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from devicefit.quiet import silence_tensorflow

silence_tensorflow()

# E402 below: TensorFlow's logging must be silenced before keras first imports it.
import keras  # noqa: E402 - after silence_tensorflow

from devicefit.spaces.convert import with_named_outputs  # noqa: E402 - after silence_tensorflow
from devicefit.spaces.eager_predict import eager_predict, named_outputs  # noqa: E402 - as above
from devicefit.tasks.base import Task, once_per_task, take  # noqa: E402 - as above
from devicefit.tasks.lazy_rows import is_lazy  # noqa: E402 - as above

TEMPERATURE = 4.0
ALPHA = 0.5  # weight of the ground-truth loss; the rest goes to matching the teacher
LEARNING_RATE = 1e-3
WARMUP = 0.1  # share of the steps over which the learning rate rises to LEARNING_RATE
PATIENCE = 2  # epochs without a better validation metric before fine-tuning stops
# The extra epochs of a heavier structural change (search/extra_epochs.py) run at
# RESTART_RATE times the first rate: a warm restart from its best weights.
RESTART_RATE = 0.3
_TEACHER_CACHE: dict[int, tuple[Task, np.ndarray]] = {}


def outputs_are_probabilities(model: keras.Model) -> bool:
    """Whether the model ends in a softmax (so distillation must work on log-probs).

    Args:
        model: the task's original Keras model.

    Returns:
        True when its last layer is a Softmax layer or has a softmax activation.
    """
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", "") == "softmax" or last.__class__.__name__ == "Softmax"


def training_subset(task: Task) -> np.ndarray:
    """Indices of the training samples fine-tuning uses (all, or a fixed random subset).

    Args:
        task: the loaded task; its ``finetune_samples`` caps the subset (None: all).

    Returns:
        Sorted indices into ``task.data.x_train``, the same on every call (seed 0).
    """
    total = len(task.data.x_train)
    limit = task.finetune_samples
    if limit is None or limit >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(0).permutation(total)[:limit])


def teacher_outputs(task: Task) -> Any:
    """The original model's outputs on the fine-tuning inputs, computed once per process
    (a dict by output name for a model with several outputs).

    Args:
        task: the loaded task; its model is the teacher.

    Returns:
        The outputs on ``training_subset``'s samples, in its order: an array, or arrays by
        output name.
    """

    def compute() -> Any:
        """The teacher's outputs, computed now (lazily decoded inputs batch by batch).

        Returns:
            As ``teacher_outputs`` returns them.
        """
        x = task.data.x_train[training_subset(task)]
        if is_lazy(x):  # a folder of images: decoded batch by batch, never all at once
            outputs = eager_predict(task.model, x)
        else:
            outputs = task.model.predict(x, verbose=0, batch_size=64)
        if task.output_kinds:  # several outputs: a dict by output name
            return {k: np.asarray(v) for k, v in named_outputs(task.model, outputs).items()}
        return np.asarray(outputs)

    return once_per_task(_TEACHER_CACHE, task, compute)


def _classification_loss(classes: int, probabilities: bool) -> Any:
    from keras import ops

    def loss(y: Any, pred: Any) -> Any:
        """The distillation loss of a batch.

        Args:
            y: one-hot labels with the teacher's outputs after them (``classes`` columns
                each).
            pred: the student's outputs: logits, or probabilities when ``probabilities``.

        Returns:
            Per sample, ALPHA times the cross-entropy with the labels plus the rest times
            the cross-entropy with the teacher, both softened by TEMPERATURE (scaled by its
            square).
        """
        truth, teacher = y[:, :classes], y[:, classes:]
        if probabilities:
            pred = ops.log(ops.clip(pred, 1e-7, 1.0))
            teacher = ops.log(ops.clip(teacher, 1e-7, 1.0))
        hard = keras.losses.categorical_crossentropy(truth, pred, from_logits=True)
        soft_t = ops.softmax(teacher / TEMPERATURE)
        log_s = ops.log_softmax(pred / TEMPERATURE)
        soft = -ops.sum(soft_t * log_s, axis=-1) * TEMPERATURE**2
        return ALPHA * hard + (1 - ALPHA) * soft

    return loss


def _regression_loss(channels: int) -> Any:
    from keras import ops

    def loss(y: Any, pred: Any) -> Any:
        """The distillation loss of a batch.

        Args:
            y: the targets with the teacher's outputs after them (``channels`` each, last
                axis).
            pred: the student's outputs.

        Returns:
            ALPHA times the mean squared error to the targets plus the rest times that to
            the teacher.
        """
        truth, teacher = y[..., :channels], y[..., channels:]
        hard = ops.mean(ops.square(truth - pred))
        soft = ops.mean(ops.square(teacher - pred))
        return ALPHA * hard + (1 - ALPHA) * soft

    return loss


class _KeepBest(keras.callbacks.Callback):
    """Scores the task metric on the validation split after each epoch (and before the
    first), stops after ``patience`` epochs without a better one, and restores the best
    weights at the end (``enabled``). With ``limits`` (the largest validation drop worth
    the remaining epochs, after epoch 1, 2, ...; search/rejection.py ``epoch_limits``) it
    also stops a candidate whose best drop so far is beyond the limit of its epoch: it is
    ``hopeless``, and the trial is pruned."""

    def __init__(
        self,
        task: Task,
        enabled: bool,
        patience: int = PATIENCE,
        limits: Sequence[float | None] = (),
        start_score: float | None = None,
    ) -> None:
        super().__init__()
        self.task, self.enabled, self.patience = task, enabled, patience
        self.limits = tuple(limits)
        self.start_score = start_score
        self.best: tuple[float, list[np.ndarray]] | None = None
        self.scores: list[float] = []
        self.epoch_scores: list[float] = []  # after each epoch, as the metric reads
        self.since_best = 0
        self.epochs_run = 0
        self.hopeless: dict[str, float] | None = None  # epoch, drop and limit that stopped it

    def _score(self, known: float | None = None) -> float:
        """The validation metric of the weights now (``known``: the caller's, not scored
        again), recorded; returned so that higher is better."""
        value = known
        if value is None:  # as every other validation score: the same calls, the same sums
            from devicefit.search.rejection import validation_score

            value = validation_score(self.model, self.task)
        self.scores.append(value)
        return value if self.task.metric.higher_is_better else -value

    def on_train_begin(self, logs: Any = None) -> None:
        """Score the weights before training as the best so far (when ``enabled``).

        Args:
            logs: Keras's logs (unused).
        """
        if self.enabled:
            self.best = (self._score(self.start_score), self.model.get_weights())

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        """Score the epoch, stop a hopeless candidate, keep the best weights and stop after
        ``patience`` epochs without a better score.

        Args:
            epoch: the epoch just finished, counted from 0.
            logs: Keras's logs (unused).
        """
        self.epochs_run = epoch + 1
        if not (self.enabled or self.limits):
            return
        score = self._score()
        self.epoch_scores.append(self.scores[-1])
        if self._stop_hopeless(epoch + 1) or not self.enabled:
            return
        if self.best is None or score > self.best[0]:
            self.best = (score, self.model.get_weights())
            self.since_best = 0
            return
        self.since_best += 1
        if self.since_best >= self.patience:
            self.model.stop_training = True

    def _stop_hopeless(self, epoch: int) -> bool:
        limit = self.limits[epoch - 1] if epoch <= len(self.limits) else None
        if limit is None:
            return False
        from devicefit.search.rejection import validation_reference

        metric = self.task.metric
        # Kept weights may be those from before training (``self.scores`` has their score).
        seen = self.scores if self.enabled else self.epoch_scores
        best = max(seen) if metric.higher_is_better else min(seen)
        drop = metric.drop(validation_reference(self.task), best)
        if drop <= limit:
            return False
        self.hopeless = {"epoch": epoch, "drop": drop, "limit": limit}
        self.model.stop_training = True
        return True

    def on_train_end(self, logs: Any = None) -> None:
        """Restore the best weights (when ``enabled``).

        Args:
            logs: Keras's logs (unused).
        """
        if self.enabled and self.best is not None:
            self.model.set_weights(self.best[1])


def finetune(
    model: keras.Model,
    task: Task,
    epochs: int,
    callbacks: list[keras.callbacks.Callback],
    keep_best: bool = True,
    patience: int = PATIENCE,
    learning_rate: float = LEARNING_RATE,
    hopeless_after: Sequence[float | None] = (),
    start_score: float | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place for ``epochs`` on the training split against labels and
    the original model's outputs.

    Args:
        model, task: the candidate (trained in place); the loaded task (data, metric, teacher).
        epochs, callbacks: the most epochs to train; more Keras callbacks (a weights technique's).
        keep_best: restores the best validation epoch (callers turn it off when a technique's
            schedule must finish, e.g. sparsity), and with it early stopping.
        patience, learning_rate: epochs without a better score before stopping; the peak rate.
        hopeless_after: the largest best-so-far validation drop after epoch 1, 2, ... worth going on
            (None: no limit); past it, training stops.
        start_score: the validation metric of ``model`` as it is now, when the caller has it (with
            ``keep_best`` it is the score to beat; without it, it is not needed).

    Returns:
        The validation scores (``val_scores``: before training when ``keep_best``, then after each
        epoch; ``epoch_scores``: after each epoch, when anything was scored), the epochs run,
        whether the last epoch was the best so far (``improving``: more epochs may gain more), the
        score of the weights kept (``kept_score``) and, when a limit stopped it, ``hopeless``: the
        epoch, its drop and the limit."""
    subset = training_subset(task)
    x_train, y_train = task.data.x_train[subset], take(task.data.y_train, subset)
    model, target, loss = _targets(model, task, y_train)
    optimizer = keras.optimizers.Adam(_schedule(task, epochs, learning_rate))
    model.compile(optimizer=optimizer, loss=loss)
    keeper = _KeepBest(task, keep_best, patience, hopeless_after, start_score)
    _fit(model, task, x_train, target, epochs, [*callbacks, keeper])
    improving = keeper.enabled and keeper.since_best == 0 and len(keeper.scores) > 1
    kept = None  # the validation metric of the weights kept (None without keep_best)
    if keeper.best is not None:
        kept = keeper.best[0] if task.metric.higher_is_better else -keeper.best[0]
    return {
        "val_scores": keeper.scores,
        "epoch_scores": keeper.epoch_scores,
        "hopeless": keeper.hopeless,
        "epochs_run": keeper.epochs_run,
        "improving": improving,
        "kept_score": kept,
    }


def _fit(
    model: keras.Model,
    task: Task,
    x_train: Any,
    target: Any,
    epochs: int,
    callbacks: list[keras.callbacks.Callback],
) -> None:
    if is_lazy(x_train):  # a folder of images: streamed a batch at a time
        model.fit(
            ShuffledBatches(x_train, target, batch_size(task)),
            epochs=epochs,
            callbacks=callbacks,
            verbose=0,
        )
    else:
        model.fit(
            x_train,
            target,
            batch_size=batch_size(task),
            epochs=epochs,
            callbacks=callbacks,
            verbose=0,
            shuffle=True,
        )


def _targets(model: keras.Model, task: Task, y_train: Any) -> tuple[keras.Model, Any, Any]:
    """The model to train, its training targets (labels beside the original model's
    outputs) and its loss; a model with several outputs is trained through a view with
    named outputs (the same layers, so it trains the model)."""
    teacher = teacher_outputs(task)
    if not task.output_kinds:
        probabilities = outputs_are_probabilities(task.model)
        target, loss = _target_and_loss(task.metric.kind, y_train, teacher, probabilities)
        return model, target, loss
    pairs = {
        name: _target_and_loss(kind, y_train[name], teacher[name], False)
        for name, kind in task.output_kinds.items()
    }
    targets = {name: pair[0] for name, pair in pairs.items()}
    losses = {name: pair[1] for name, pair in pairs.items()}
    return with_named_outputs(model), targets, losses


def _schedule(task: Task, epochs: int, learning_rate: float) -> Any:
    """Cosine decay after a warm-up: a cold start at the full rate can wreck a freshly
    rewritten network's good weights."""
    steps = epochs * steps_per_epoch(task)
    warmup = int(WARMUP * steps)
    return keras.optimizers.schedules.CosineDecay(
        learning_rate * WARMUP if warmup else learning_rate,
        max(1, steps - warmup),
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def _target_and_loss(
    kind: str, labels: np.ndarray, teacher: np.ndarray, probabilities: bool
) -> tuple[np.ndarray, Any]:
    """One output's training target (its labels beside the original model's outputs, for
    distillation) and loss."""
    if kind == "classification":
        classes = teacher.shape[-1]
        hot = keras.utils.to_categorical(labels.reshape(-1), classes)
        target = np.concatenate([hot, teacher.reshape(len(teacher), -1)], axis=-1)
        return target, _classification_loss(classes, probabilities)
    return np.concatenate([labels, teacher], axis=-1), _regression_loss(labels.shape[-1])


class ShuffledBatches(keras.utils.PyDataset):
    """Batches of lazily decoded inputs with their targets, in a new order every epoch
    (fixed by the seed and the epoch, so a re-run fine-tunes alike)."""

    def __init__(self, x: Any, y: Any, size: int, seed: int = 0) -> None:
        super().__init__()
        self.x, self.y, self.size, self.seed = x, y, size, seed
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        return np.random.default_rng((self.seed, self.epoch)).permutation(len(self.x))

    def __len__(self) -> int:
        return int(np.ceil(len(self.x) / self.size))

    def __getitem__(self, index: int) -> tuple[np.ndarray, Any]:
        chosen = np.sort(self.order[index * self.size : (index + 1) * self.size])
        return self.x[chosen][:], take(self.y, chosen)  # targets: one array, or by output

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


def batch_size(task: Task) -> int:
    """The fine-tuning batch size for ``task``.

    Args:
        task: the loaded task.

    Returns:
        32 for a classification metric, else 8.
    """
    # Small images classify well in large batches; SR patches are big per sample.
    return 32 if task.metric.kind == "classification" else 8


def steps_per_epoch(task: Task) -> int:
    """The optimizer steps in one fine-tuning epoch of ``task``.

    Args:
        task: the loaded task.

    Returns:
        The training subset's size over ``batch_size``, rounded up.
    """
    return int(np.ceil(len(training_subset(task)) / batch_size(task)))

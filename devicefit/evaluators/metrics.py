"""Task metrics, computed on the outputs of the TFLite file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from devicefit.errors import UsageError


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    kind: Literal["classification", "regression"]
    unit: str
    # In the metric's own unit; None: the study must give one (a user's metric without it).
    default_max_drop: float | None
    # Arrays; a user's metric on a model with several outputs gets dicts of them.
    fn: Callable[[Any, Any], float]
    source: str | None = None  # "file.py:function" or "module:function" of a user's metric
    # A built-in metric of a model with several outputs scores this one of them.
    output: str | None = None

    def __reduce__(self) -> tuple[Callable[..., Metric], tuple[Any, ...]]:
        # A user's function lives in a module loaded from a path, which another process
        # cannot import by name: a metric travels as its name and is loaded again there.
        return _load_again, (self.name, self.source, self.kind, self.output)

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        """The metric of ``y_pred`` against ``y_true``: arrays, or for a model with several
        outputs dicts by output name (one of them scored, or a user's metric gets all)."""
        if self.output is not None:
            y_true, y_pred = y_true[self.output], y_pred[self.output]
        if isinstance(y_pred, Mapping):
            y_true = {k: np.asarray(v) for k, v in y_true.items()}
            return float(self.fn(y_true, {k: np.asarray(v) for k, v in y_pred.items()}))
        return float(self.fn(np.asarray(y_true), np.asarray(y_pred)))

    def drop(self, reference: float, value: float) -> float:
        """How much worse ``value`` is than ``reference`` (positive = worse), in metric units.

        Args:
            reference: the original model's value.
            value: a candidate's value.

        Returns:
            The drop, comparable with the study's metric budget; negative when better.
        """
        return reference - value if self.higher_is_better else value - reference


def _labels(y_true: np.ndarray) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim > 1 and y.shape[-1] > 1:  # one-hot
        return y.argmax(-1)
    return y.reshape(-1).astype(np.int64)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Top-1 accuracy: the share of samples whose highest score is their label's class.

    Args:
        y_true: class indices, or one-hot rows.
        y_pred: the model's class scores (logits or probabilities), one row per sample.

    Returns:
        The accuracy in percent, 0 to 100.
    """
    return 100.0 * float(np.mean(y_pred.reshape(len(y_pred), -1).argmax(-1) == _labels(y_true)))


def top5(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Top-5 accuracy: the share of samples whose label is among their 5 highest scores.

    Args:
        y_true: class indices, or one-hot rows.
        y_pred: the model's class scores, one row per sample; with fewer than 5 classes
            every class counts (100%).

    Returns:
        The accuracy in percent, 0 to 100.
    """
    scores = y_pred.reshape(len(y_pred), -1)
    k = min(5, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return 100.0 * float(np.mean((top == _labels(y_true)[:, None]).any(axis=1)))


def psnr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-sample PSNR in dB; data in [0, 1] (or [0, 255] when the targets exceed 1).

    Args:
        y_true: the target images, one per sample.
        y_pred: the model's images of the same shape; clipped to the data's range.

    Returns:
        The mean over samples of each sample's PSNR (a sample's squared error is floored
        at 1e-12, so an exact match stays finite).
    """
    peak = 255.0 if float(np.max(y_true)) > 1.5 else 1.0
    pred = np.clip(y_pred.astype(np.float64), 0.0, peak)
    err = ((pred - y_true.astype(np.float64)) ** 2).reshape(len(y_true), -1).mean(axis=1)
    err = np.maximum(err, 1e-12)
    return float(np.mean(10.0 * np.log10(peak**2 / err)))


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean squared error over every element.

    Args:
        y_true: the targets.
        y_pred: the model's outputs, of the same shape.

    Returns:
        The mean squared difference, in the targets' units squared (lower is better).
    """
    return float(np.mean((y_pred.astype(np.float64) - y_true.astype(np.float64)) ** 2))


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", True, "classification", "%", 1.0, accuracy),
    "top5": Metric("top5", True, "classification", "%", 1.0, top5),
    # fidelity: top-1 agreement with the original model; the task loader turns the
    # original model's predictions into labels, so it is computed like accuracy.
    "fidelity": Metric("fidelity", True, "classification", "%", 1.0, accuracy),
    "psnr": Metric("psnr", True, "regression", "dB", 0.3, psnr),
    "mse": Metric("mse", False, "regression", "", 0.0, mse),
}


def get_metric(name: str) -> Metric:
    """The built-in metric ``name``.

    Args:
        name: ``accuracy``, ``top5``, ``fidelity``, ``psnr`` or ``mse``.

    Returns:
        The metric (one shared object per name).

    Raises:
        UsageError: no built-in metric has that name; the message lists them.
    """
    try:
        return METRICS[name]
    except KeyError:
        raise UsageError(
            f"--metric: unknown metric {name!r}; choose one of {', '.join(METRICS)}"
        ) from None


def _load_again(name: str, source: str | None, kind: Any, output: str | None) -> Metric:
    if source is None:
        metric = get_metric(name)
    else:
        from devicefit.evaluators.custom_metric import load_custom_metric

        metric = load_custom_metric(source, kind)
    return replace(metric, output=output) if output is not None else metric

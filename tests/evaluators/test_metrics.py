import numpy as np
import pytest

from devicefit.errors import UsageError
from devicefit.evaluators.metrics import get_metric


def test_accuracy_and_top5_in_percent() -> None:
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([1, 1, 2])
    assert get_metric("accuracy")(labels, logits) == pytest.approx(200 / 3)
    assert get_metric("top5")(labels, logits) == pytest.approx(100.0)


def test_top5_counts_only_five_best() -> None:
    scores = np.tile(np.arange(10.0), (2, 1))  # class 9 best, class 0 worst
    assert get_metric("top5")(np.array([5, 4]), scores) == pytest.approx(50.0)


def test_psnr_of_known_error() -> None:
    y = np.full((2, 4, 4, 1), 0.5)
    pred = y + 0.1  # mse 0.01 -> 20 dB
    assert get_metric("psnr")(y, pred) == pytest.approx(20.0)


def test_mse_lower_is_better_drop_sign() -> None:
    metric = get_metric("mse")
    assert metric.drop(1.0, 1.5) == pytest.approx(0.5)
    assert get_metric("accuracy").drop(90.0, 89.0) == pytest.approx(1.0)


def test_unknown_metric() -> None:
    with pytest.raises(UsageError, match="--metric: unknown metric 'f1'"):
        get_metric("f1")

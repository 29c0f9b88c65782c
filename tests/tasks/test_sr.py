"""The built-in sr task: disjoint photos, 64x64 crops, and a model that beats bicubic."""

from __future__ import annotations

import numpy as np

from devicefit.evaluators.metrics import psnr
from devicefit.tasks import Task, sr


def test_photos_are_disjoint_between_splits() -> None:
    train, val, test = set(sr.TRAIN_PHOTOS), set(sr.VAL_PHOTOS), set(sr.TEST_PHOTOS)
    assert not train & val and not train & test and not val & test
    assert "cat" not in train | val | test  # skimage's cat is chelsea


def test_crops_and_info(sr_task: Task) -> None:
    data = sr_task.data
    assert sr_task.input_shape == (1, 64, 64, 1)
    assert sr_task.metric.name == "psnr"
    assert tuple(sr_task.model.inputs[0].shape) == (None, None, None, 1)
    for x, y in (
        (data.x_train, data.y_train),
        (data.x_val, data.y_val),
        (data.x_test, data.y_test),
    ):
        assert x.shape == y.shape and x.shape[1:] == (64, 64, 1)
        assert x.dtype == y.dtype == np.float32
        assert 0.0 <= y.min() and y.max() <= 1.0
    assert len(data.x_test) >= 80
    assert sr_task.info["bicubic_psnr"] == psnr(data.y_test, data.x_test)


def test_model_runs_at_any_size(sr_task: Task) -> None:
    out = sr_task.model.predict(np.zeros((1, 30, 45, 1), np.float32), verbose=0)
    assert out.shape == (1, 30, 45, 1)


def test_tflite_beats_bicubic_on_test_crops(sr_task: Task, sr_tflite: bytes) -> None:
    from devicefit.evaluators.tflite_predict import predict

    value = sr_task.metric(sr_task.data.y_test, predict(sr_tflite, sr_task.data.x_test))
    assert value >= sr_task.info["bicubic_psnr"] + 0.5

"""The ``--data`` file of a user task: an ``.npz`` with x/y arrays per split, checked up front.

Keys: ``x_train``, ``y_train``, ``x_val``, ``y_val`` and optionally ``x_test``,
``y_test``. Labels may be left out for the ``fidelity`` metric. A model with several
inputs takes ``x_<split>_<input>`` (one array per input name), several outputs
``y_<split>_<output>``. Every problem is
one UsageError line naming ``--data``, the file and the array.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.errors import UsageError
from devicefit.evaluators.metrics import Metric
from devicefit.tasks.base import Splits, take
from devicefit.tasks.named_inputs import NamedInputs

SPLITS = ("train", "val", "test")


def read_npz(path_text: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read without unpickling (data files are untrusted).

    Args:
        path_text: ``--data``.

    Returns:
        Key -> array, each read into memory.

    Raises:
        UsageError: the file is missing, is not a zip archive, or does not read as an
            ``.npz`` without pickles.
    """
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"--data: file not found: {path}")
    # np.load falls back to unpickling anything that is not a zip; refuse that early
    if not zipfile.is_zipfile(path):
        raise UsageError(f"--data: cannot read {path} as an .npz file: not a zip archive")
    try:
        with np.load(path, allow_pickle=False) as npz:  # no pickles: data files are untrusted
            return {key: npz[key] for key in npz.files}
    except Exception as exc:  # noqa: BLE001 - an untrusted file fails in many ways
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--data: cannot read {path} as an .npz file: {reason}") from None


def default_metric(arrays: dict[str, np.ndarray]) -> str:
    """Without --metric: agreement with the model if there are no labels, else by label type.

    Args:
        arrays: the data's arrays by key; only ``y_train`` is looked at.

    Returns:
        ``"fidelity"`` without labels, ``"accuracy"`` for integer or one-hot labels,
        else ``"mse"``.
    """
    y = arrays.get("y_train")
    if y is None:
        return "fidelity"
    one_hot = y.ndim == 2 and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()
    return "accuracy" if np.issubdtype(y.dtype, np.integer) or one_hot else "mse"


def make_splits(
    arrays: dict[str, np.ndarray], path: str, labels_required: bool, outputs: tuple[str, ...] = ()
) -> Splits:
    """Splits from the arrays; without a test split the validation split is halved. With
    several ``outputs`` the labels of each split are a dict by output name, read from
    ``y_<split>_<output>``.

    Args:
        arrays: the data's arrays by key (an ``.npz``'s, or a loader's read).
        path: ``--data``, named in errors.
        labels_required: False where labels may be left out (``fidelity``): splits
            without them get placeholder labels.
        outputs: the model's output names when it has several; empty for one.

    Returns:
        The train, validation and test splits.

    Raises:
        UsageError: an array is missing, a split has no samples, inputs and labels differ
            in length, or there is no test split and too few validation samples to halve.
    """
    if outputs:
        return _output_splits(arrays, path, outputs)

    x = {"train": _need(arrays, path, "x_train"), "val": _need(arrays, path, "x_val")}
    has_test = "x_test" in arrays or ("y_test" in arrays and labels_required)
    if has_test:
        x["test"] = _need(arrays, path, "x_test")
    y: dict[str, np.ndarray] = {}
    for split in x:
        if labels_required or f"y_{split}" in arrays:
            y[split] = _need(arrays, path, f"y_{split}")
    _check_sample_counts(x, y, path)
    if not has_test:
        x["val"], x["test"], y = _halve_validation(x["val"], y, path)
    # Placeholders when labels are absent (fidelity): replaced by the model's predictions.
    blank = {split: np.zeros(len(x[split]), np.int64) for split in SPLITS}
    return Splits(
        x["train"], y.get("train", blank["train"]),
        x["val"], y.get("val", blank["val"]),
        x["test"], y.get("test", blank["test"]),
    )  # fmt: skip


def _need(arrays: dict[str, np.ndarray], path: str, key: str) -> np.ndarray:
    """The array ``key`` of the data.

    Args:
        arrays: the data's arrays by key.
        path: ``--data``, named in the error.
        key: e.g. ``"x_train"``.

    Returns:
        The array.

    Raises:
        UsageError: the data has no such array.
    """
    if key not in arrays:
        raise UsageError(f"--data: {path} lacks {key}")
    return arrays[key]


def _check_sample_counts(x: dict[str, np.ndarray], y: dict[str, np.ndarray], path: str) -> None:
    """Refuse a split without samples, or whose labels differ from its inputs in length."""
    for split, xs in x.items():
        if xs.ndim == 0 or len(xs) == 0:
            raise UsageError(f"--data: x_{split} in {path} has no samples")
        if split in y and (y[split].ndim == 0 or len(y[split]) != len(xs)):
            got = len(y[split]) if y[split].ndim else "no"
            raise UsageError(
                f"--data: x_{split} has {len(xs)} samples but y_{split} has {got} in {path}"
            )


def _output_splits(arrays: dict[str, np.ndarray], path: str, outputs: tuple[str, ...]) -> Splits:
    """Splits of a model with several outputs: ``x_<split>`` and ``y_<split>_<output>``."""
    splits = ["train", "val"] + (["test"] if "x_test" in arrays else [])
    x = {split: _need(arrays, path, f"x_{split}") for split in splits}
    y = {
        split: {name: _need(arrays, path, f"y_{split}_{name}") for name in outputs}
        for split in splits
    }
    for split in splits:
        if x[split].ndim == 0 or len(x[split]) == 0:
            raise UsageError(f"--data: x_{split} in {path} has no samples")
        for name, labels in y[split].items():
            if labels.ndim == 0 or len(labels) != len(x[split]):
                got = len(labels) if labels.ndim else "no"
                raise UsageError(
                    f"--data: x_{split} has {len(x[split])} samples but y_{split}_{name} has "
                    f"{got} in {path}"
                )
    if "test" not in x:
        x["val"], x["test"], y = _halve_validation(x["val"], y, path)
    return Splits(x["train"], y["train"], x["val"], y["val"], x["test"], y["test"])


def _halve_validation(
    x_val: np.ndarray, y: dict[str, Any], path: str
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    # A fixed shuffle of the validation set, half for each, so the reported
    # metric is never on data used to pick or calibrate models.
    if len(x_val) < 2:
        raise UsageError(f"--data: {path} has no x_test and too few x_val samples to split")
    order = np.random.default_rng(0).permutation(len(x_val))
    val, test = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    y = dict(y)
    if "val" in y:
        y["val"], y["test"] = take(y["val"], val), take(y["val"], test)
    return x_val[val], x_val[test], y


def _fits(shape: tuple, expected: tuple) -> bool:
    return len(shape) == len(expected) and all(
        e is None or e == g for e, g in zip(expected, shape, strict=True)
    )


def group_inputs(arrays: dict[str, Any], names: tuple[str, ...], path: str) -> dict[str, Any]:
    """The arrays with each split's ``x_<split>_<input>`` arrays (a model with several
    inputs) gathered into one :class:`NamedInputs` under ``x_<split>``.

    Args:
        arrays: the data's arrays by key.
        names: the model's input names.
        path: ``--data``, named in errors.

    Returns:
        A new dict: ``arrays`` plus an ``x_<split>`` per split present (a test split may
        be left out altogether).

    Raises:
        UsageError: a split lacks one input's array, or its inputs differ in length.
    """
    grouped = dict(arrays)
    for split in SPLITS:
        keys = [f"x_{split}_{name}" for name in names]
        present = [key for key in keys if key in arrays]
        if not present and split == "test" and "x_test" not in arrays:
            continue
        if len(present) < len(keys):
            missing = next(key for key in keys if key not in arrays)
            plain = f" (it has x_{split}; a model with several inputs takes one per input)"
            raise UsageError(
                f"--data: {path} lacks {missing}" + (plain if f"x_{split}" in arrays else "")
            )
        try:
            grouped[f"x_{split}"] = NamedInputs(
                {name: arrays[f"x_{split}_{name}"] for name in names}
            )
        except ValueError:
            counts = ", ".join(f"{key} has {len(arrays[key])}" for key in keys)
            raise UsageError(f"--data: inputs of different lengths in {path}: {counts}") from None
    return grouped


def check_inputs(splits: Splits, expected: tuple | dict[str, tuple]) -> tuple[int, ...]:
    """The concrete sample shape: the model's ``expected`` with free dims taken from x_train
    (for several inputs, ``expected`` by input name, and the first input's shape).

    Args:
        splits: the task's splits.
        expected: the model's sample shape(s), as ``expected_inputs`` in tasks/user.py
            gives them, None where a size is free.

    Returns:
        The sample shape the TFLite file is converted at (batch axis not included).

    Raises:
        UsageError: ``x_train`` does not fit the model, or another split's samples differ
            from it in shape.
    """
    if isinstance(expected, dict):
        return _check_named_inputs(splits, expected)
    got = tuple(splits.x_train.shape[1:])
    if not _fits(got, expected):
        raise UsageError(
            f"--data: x_train samples have shape {got} but the model expects {expected}"
        )
    for split in ("val", "test"):
        # one shape for all splits: the TFLite file is evaluated at a fixed shape
        shape = tuple(getattr(splits, f"x_{split}").shape[1:])
        if shape != got:
            raise UsageError(
                f"--data: x_{split} samples have shape {shape} but the model expects {got}"
            )
    return got


def check_labels(splits: Splits, output: tuple, metric: Metric) -> None:
    """Labels the metric can compare with the model's ``output`` (sample shape).

    Args:
        splits: the task's splits (one output's labels).
        output: the model output's sample shape, None where a size is free.
        metric: its kind picks the check: element-wise shapes for regression, class
            indices or one-hot rows for classification.

    Raises:
        UsageError: a split's labels do not fit, naming the split and what was expected.
    """
    classes = int(np.prod(output)) if None not in output else None
    for split in SPLITS:
        y = getattr(splits, f"y_{split}")
        if metric.kind == "regression":
            if not _fits(tuple(y.shape[1:]), output):
                raise UsageError(
                    f"--data: y_{split} samples have shape {tuple(y.shape[1:])} but the model "
                    f"outputs {output}; metric {metric.name} compares them element-wise"
                )
            continue
        one_hot = y.ndim == 2 and y.shape[1] > 1 and y.shape[1] == classes
        indices = y.reshape(len(y), -1).shape[1] == 1 and np.all(np.mod(y, 1) == 0)
        in_range = indices and y.min() >= 0 and (classes is None or y.max() < classes)
        if not (one_hot or in_range):
            span = f" 0..{classes - 1}" if classes else ""
            raise UsageError(
                f"--data: y_{split} must hold class indices{span} or one-hot rows for metric "
                f"{metric.name}; got shape {y.shape}, dtype {y.dtype}"
            )


def _check_named_inputs(splits: Splits, expected: dict[str, tuple]) -> tuple[int, ...]:
    # A model with several inputs has fixed sizes (checked when it loads): every split's
    # every input must have them.
    for split in SPLITS:
        for name, got in getattr(splits, f"x_{split}").shapes.items():
            if tuple(got) != tuple(expected[name]):
                raise UsageError(
                    f"--data: x_{split}_{name} samples have shape {tuple(got)} but the model's "
                    f"input {name} takes {tuple(expected[name])}"
                )
    return tuple(next(iter(expected.values())))

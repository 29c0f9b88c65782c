"""A user task: a Keras model file or SavedModel folder plus an ``.npz`` of data splits.

Everything a user can get wrong is checked here, up front, so a search never
starts on input it would fail on later; each problem is one UsageError line
naming the flag and the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from devicefit.errors import UsageError
from devicefit.evaluators.custom_metric import is_custom_metric, metric_for
from devicefit.evaluators.metrics import METRICS, Metric
from devicefit.quiet import silence_tensorflow
from devicefit.spaces.eager_predict import eager_predict
from devicefit.tasks.base import Splits, Task, TaskSpec
from devicefit.tasks.data_loader import (
    is_data_loader,
    is_written_splits,
    read_loader,
    read_written_splits,
    splits_digest,
    written_by_this_process,
)
from devicefit.tasks.lazy_rows import is_lazy
from devicefit.tasks.named_inputs import input_names
from devicefit.tasks.user_data import (
    check_inputs,
    check_labels,
    default_metric,
    group_inputs,
    make_splits,
    read_npz,
)

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()


def load_user_task(spec: TaskSpec) -> Task:
    """The user's model and data, checked; the metric defaults by the labels given.

    Args:
        spec: ``--model``, ``--data`` (an ``.npz``, an image folder, a loader or the
            folder a loader's read wrote) and the ``--metric``, ``--output`` and
            ``--image-size`` given with them.

    Returns:
        The task, its inputs cast to the dtype the model takes; its ``info`` names the
        files (and a loader's data digest, which a resumed study compares).

    Raises:
        UsageError: ``--model`` or ``--data`` is missing, the model does not load, or the
            data, metric or flags do not fit the model.
    """
    if not spec.model_path:
        raise UsageError("--model: a model path is required when no --task is given")
    if not spec.data_path:
        raise UsageError(f"--data: a data file is required with --model {spec.model_path}")
    model = load_user_model(spec.model_path)
    if Path(spec.data_path).is_dir() and not is_written_splits(spec.data_path):
        splits, metric = _image_folder(spec, model)
        fidelity = False
    else:
        if spec.image_size is not None:
            raise UsageError(
                f"--image-size: only for a --data folder of images, not {spec.data_path}"
            )
        arrays = _read_arrays(spec.data_path, model)
        if len(model.outputs) > 1:
            return _several_outputs(spec, model, arrays)
        by_labels = default_metric(arrays)
        # A user's metric is trained for as the labels read: class indices, or values.
        metric = metric_for(spec.metric or by_labels, METRICS[by_labels].kind)
        fidelity = metric.name == "fidelity"
        splits = make_splits(arrays, spec.data_path, labels_required=not fidelity)
    sample_shape = check_inputs(splits, expected_inputs(model))
    splits = _cast_inputs(splits, model)
    if fidelity:
        splits = relabel_with_model(model, splits)
    else:
        check_labels(splits, tuple(model.outputs[0].shape[1:]), metric)
    return _task(spec, model, splits, metric, sample_shape, _opaque_note(model, spec.model_path))


def _read_arrays(data: str, model: keras.Model) -> dict[str, Any]:
    """The ``.npz``'s arrays, or a data loader's splits under the same keys (inputs on
    disk)."""
    dtype = keras.backend.standardize_dtype(model.inputs[0].dtype)
    if is_written_splits(data):  # a loader's splits, as the driver's workers get them
        arrays = read_written_splits(data, dtype)
    elif not is_data_loader(data):
        arrays = read_npz(data)
    else:  # each input's rank tells a batch from one sample
        ranks = {t.name: len(t.shape) for t in model.inputs}
        rank = ranks if len(ranks) > 1 else len(model.inputs[0].shape)
        arrays = read_loader(data, rank, dtype)[0]
    if len(model.inputs) > 1:  # x_<split>_<input> arrays, one split of named inputs
        return group_inputs(arrays, input_names(model), data)
    return arrays


def expected_inputs(model: keras.Model) -> tuple | dict[str, tuple]:
    """The sample shape the model takes: one tuple, or one per input name.

    Args:
        model: the user's model.

    Returns:
        The shape without the batch axis, None where a size is free; a dict by input
        name for a model with several inputs.
    """
    if len(model.inputs) == 1:
        return tuple(model.inputs[0].shape[1:])
    return {t.name: tuple(t.shape[1:]) for t in model.inputs}


def _task(
    spec: TaskSpec,
    model: keras.Model,
    splits: Splits,
    metric: Metric,
    sample_shape: tuple[int, ...],
    info: dict[str, Any],
    output_kinds: dict[str, str] | None = None,
) -> Task:
    return Task(
        name=spec.label(),
        model=model,
        data=splits,
        metric=metric,
        input_shape=(1, *sample_shape),
        info={
            "model_path": str(spec.model_path),
            "data_path": str(spec.data_path),
            **_data_digest(str(spec.data_path)),
            **info,
        },
        output_kinds=output_kinds,
    )


def _data_digest(data: str) -> dict[str, str]:
    """A data loader's read: the digest of what it gave (a resume compares it)."""
    if is_written_splits(data):
        return {"data_digest": splits_digest(data)}
    if is_data_loader(data):
        return {"data_digest": splits_digest(written_by_this_process(data))}
    return {}


def load_user_model(path_text: str) -> keras.Model:
    """A Keras model from .keras, .h5 or a SavedModel folder; one with several inputs must
    have fixed input sizes.

    Args:
        path_text: ``--model``.

    Returns:
        The model, uncompiled; one with several inputs rebuilt to take them as a list.

    Raises:
        UsageError: the path does not exist, is of another kind, does not load as a
            Keras model, or is a model with several inputs of which one has a free size
            (or a plain SavedModel with more than one input or output).
    """
    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"--model: file not found: {path}")
    if path.is_dir():
        model = _load_saved_model(path)
    elif path.suffix.lower() in (".keras", ".h5", ".hdf5"):
        # Keras reports a .keras file that is not a zip as "file not found": say what it is
        if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
            raise UsageError(f"--model: cannot load {path} as a Keras model: not a zip archive")
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as exc:  # noqa: BLE001 - corrupt files fail in many ways
            reason = _short(exc)
            raise UsageError(f"--model: cannot load {path} as a Keras model: {reason}") from None
    else:
        raise UsageError(f"--model: {path} is not a .keras or .h5 file or a SavedModel folder")
    if len(model.inputs) > 1:
        _check_several_inputs(model, path)
        # The same layers taking a list: a model built on a dict of inputs is called by
        # its dict's keys, which need not be the inputs' names (what the data and the
        # TFLite signature use), and its keys out of sorted order fail the converter.
        model = keras.Model(model.inputs, model.output, name=model.name)
    return model


def _check_several_inputs(model: keras.Model, path: Path) -> None:
    # A file is converted at one shape per input: one free size (an image size the data
    # fixes) is taken from the data for a one-input model, not guessed for several.
    for tensor in model.inputs:
        if any(size is None for size in tensor.shape[1:]):
            raise UsageError(
                f"--model: {path} has several inputs and input {tensor.name!r} takes "
                f"{tuple(tensor.shape[1:])}; give every input of such a model fixed sizes"
            )


def _several_outputs(spec: TaskSpec, model: keras.Model, arrays: dict[str, np.ndarray]) -> Task:
    """A model with several outputs: labels ``y_<split>_<output>`` per output, each output
    trained for as its labels read; a built-in metric scores the ``--output`` named, a
    metric of the user's own gets every output (dicts by name)."""
    from dataclasses import replace

    assert spec.data_path is not None  # load_user_task turns away a spec without data
    names = tuple(model.output_names)
    splits = make_splits(arrays, spec.data_path, labels_required=True, outputs=names)
    by_output = {name: default_metric({"y_train": splits.y_train[name]}) for name in names}
    kinds: dict[str, str] = {name: METRICS[by].kind for name, by in by_output.items()}
    if spec.metric == "fidelity":
        raise UsageError(
            f"--metric fidelity: {spec.model_path} has several outputs; score one with "
            "--output NAME and its labels, or give a metric of your own"
        )
    if spec.metric and is_custom_metric(spec.metric):
        kind: Literal["classification", "regression"] = (
            "classification" if "classification" in kinds.values() else "regression"
        )
        metric = metric_for(spec.metric, kind)
    else:
        if spec.output not in names:
            given = f"{spec.output!r} is not one of them" if spec.output else "name one"
            raise UsageError(
                f"--output: {spec.model_path} has outputs {', '.join(names)}; {given} for "
                f"--metric {spec.metric or 'accuracy/mse'}, or give a metric of your own "
                "(FILE.py:FUNCTION) that scores them all"
            )
        metric = replace(
            metric_for(spec.metric or by_output[spec.output], "classification"), output=spec.output
        )
    sample_shape = check_inputs(splits, expected_inputs(model))
    splits = _cast_inputs(splits, model)
    for index, name in enumerate(names):
        labels = replace(
            splits, **{f"y_{s}": getattr(splits, f"y_{s}")[name] for s in ("train", "val", "test")}
        )
        check_labels(labels, tuple(model.outputs[index].shape[1:]), METRICS[by_output[name]])
    return _task(spec, model, splits, metric, sample_shape, {"outputs": list(names)}, kinds)


def _image_folder(spec: TaskSpec, model: keras.Model) -> tuple[Splits, Metric]:
    """A folder of class sub-folders (tasks/image_folder.py) at ``--image-size``, or at the
    model's own input size when it has one; its classes are the labels."""
    from devicefit.tasks.image_folder import read_image_folder

    assert spec.data_path is not None  # load_user_task turns away a spec without data
    if len(model.inputs) > 1:
        raise UsageError(
            f"--data: {spec.data_path} is a folder of images, but the model takes several "
            f"inputs ({', '.join(input_names(model))}); give an .npz with x_<split>_<input>"
        )
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise UsageError(
            f"--data: {spec.data_path} is a folder of images, but the model takes {shape}, "
            "not (height, width, 1 or 3 channels)"
        )
    size = spec.image_size or (shape[0], shape[1])
    if None in size:
        raise UsageError(
            f"--image-size: the model takes images of any size; give one for {spec.data_path}"
        )
    metric = metric_for(spec.metric or "accuracy", "classification")
    if metric.name == "fidelity":
        raise UsageError(
            f"--metric fidelity: {spec.data_path} labels every image by its class folder; "
            "use accuracy, top5 or a metric of your own"
        )
    splits = read_image_folder(spec.data_path, (int(size[0]), int(size[1])), int(shape[-1]))
    return splits, metric


def _opaque_note(model: keras.Model, path: str) -> dict[str, str]:
    """A note when the model is one opaque SavedModel layer, which no graph technique can
    rewrite: the search still runs, on the converter's settings alone."""
    if not any(isinstance(layer, keras.layers.TFSMLayer) for layer in model.layers):
        return {}
    return {
        "note": f"--model: {path} is a SavedModel without its Keras layers (it loads as one "
        "TFSMLayer): only quantization applies; save it as .keras for every technique"
    }


def _load_saved_model(path: Path) -> keras.Model:
    try:  # a Keras that still reads SavedModels returns the real model, layers and all
        return keras.models.load_model(path, compile=False)
    except Exception:  # noqa: BLE001 - Keras 3 refuses plain SavedModels; wrap them below
        pass
    import tensorflow as tf

    try:
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    except Exception as exc:  # noqa: BLE001 - a SavedModel fails to load in many ways
        raise UsageError(f"--model: cannot load {path} as a Keras model: {_short(exc)}") from None
    _, inputs = signature.structured_input_signature
    outputs = signature.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise UsageError(
            f"--model: {path} has {len(inputs)} inputs and {len(outputs)} outputs; models with "
            f"more than one input or output are not supported yet"
        )
    (name, spec), (out_name, _) = next(iter(inputs.items())), next(iter(outputs.items()))
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    x = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name, name=name)
    # A single tensor binds to the signature's one argument; outputs come as a dict.
    y = layer(x)[out_name]
    return keras.Model(x, y, name=path.name)


def _cast_inputs(splits: Splits, model: keras.Model) -> Splits:
    # .npz files often hold uint8 images or float64; feed the dtype the model takes
    if len(model.inputs) > 1:
        dtypes = {t.name: keras.backend.standardize_dtype(t.dtype) for t in model.inputs}
        for split in ("train", "val", "test"):
            x = getattr(splits, f"x_{split}").with_dtypes(dtypes)
            setattr(splits, f"x_{split}", x)
        return splits
    dtype = np.dtype(keras.backend.standardize_dtype(model.inputs[0].dtype))
    splits.x_train = splits.x_train.astype(dtype, copy=False)
    splits.x_val = splits.x_val.astype(dtype, copy=False)
    splits.x_test = splits.x_test.astype(dtype, copy=False)
    return splits


def relabel_with_model(model: keras.Model, splits: Splits) -> Splits:
    """Labels = the model's own top-1 predictions, for the ``fidelity`` metric.

    Args:
        model: the original model.
        splits: the task's splits; their labels are ignored (placeholders, or the data's).

    Returns:
        New splits with the same inputs and, as labels, the int64 class index the model
        scores highest per sample.
    """

    def top1(x: np.ndarray) -> np.ndarray:
        """The model's highest-scoring class per row of ``x``.

        Args:
            x: one split's inputs, an array or a lazy split.

        Returns:
            An int64 class index per row.
        """
        # Inputs on disk are read a batch at a time; arrays go through predict as before.
        if is_lazy(x):
            scores = np.asarray(eager_predict(model, x))
        else:
            scores = np.asarray(model.predict(x, batch_size=64, verbose=0))
        return scores.reshape(len(x), -1).argmax(-1).astype(np.int64)

    return Splits(
        splits.x_train, top1(splits.x_train),
        splits.x_val, top1(splits.x_val),
        splits.x_test, top1(splits.x_test),
    )  # fmt: skip


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= 160 else first[:157] + "..."

"""Keras model -> TFLite flatbuffer, at the input shape the model ships with."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable
from typing import Any

from devicefit.errors import TrialFailed
from devicefit.quiet import silence_tensorflow

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()
import tensorflow as tf  # noqa: E402 - after silence_tensorflow()

Configure = Callable[[Any], None]


def to_tflite(
    model: keras.Model, input_shape: tuple[int, ...], configure: Configure | None = None
) -> bytes:
    """Convert ``model`` for a fixed ``input_shape`` (batch 1 included).

    Models whose inputs have unknown spatial sizes are traced at ``input_shape`` so the file
    has static shapes, as a device runtime wants. If the Keras path fails on a
    graph, the SavedModel path is tried, as the TensorFlow docs advise.

    Args:
        model: the Keras model to convert; left untouched.
        input_shape: the shipped input shape, batch 1 included, e.g. (1, 32, 32, 1).
        configure: sets quantization options on the converter (called with the
            ``TFLiteConverter`` before it converts); None writes a float32 file.

    Returns:
        The TFLite flatbuffer's bytes.

    Raises:
        TrialFailed: every conversion path failed (the message holds each one's error).
    """
    errors: list[str] = []
    model = with_named_outputs(model)
    static = tuple(model.inputs[0].shape[1:]) == tuple(input_shape[1:]) if model.inputs else False
    builds = (_from_keras_model, _from_saved_model) if static else (_from_saved_model,)
    for build in builds:
        with tempfile.TemporaryDirectory(prefix="devicefit-export-") as folder:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    converter = build(model, input_shape, folder)
                if configure is not None:
                    configure(converter)
                # Keras' exporter prints its signature to stdout on every call.
                with contextlib.redirect_stdout(io.StringIO()):
                    return bytes(converter.convert())
            except Exception as exc:  # noqa: BLE001 - conversion errors come in many types
                errors.append(f"{build.__name__}: {type(exc).__name__}: {str(exc)[:300]}")
    raise TrialFailed("TFLite conversion failed: " + " | ".join(errors))


def with_named_outputs(model: keras.Model) -> keras.Model:
    """A model with a list of outputs as the same layers giving a dict by output name:
    the converter names a list's outputs output_0, output_1, ..., a dict's by its keys,
    and a user's code reads the file's outputs by the names their model gave them.

    Args:
        model: a Keras model; not changed.

    Returns:
        A new functional model on the same layers for a model with a list of two or more
        named outputs; ``model`` itself otherwise.
    """
    outputs = getattr(model, "outputs", None) or []
    names = list(getattr(model, "output_names", []) or [])
    if len(outputs) < 2 or isinstance(model.output, dict) or len(names) != len(outputs):
        return model
    return keras.Model(model.inputs, dict(zip(names, outputs, strict=True)), name=model.name)


def _signature(model: keras.Model, input_shape: tuple[int, ...]) -> list[tf.TensorSpec]:
    # Batch left open (-1 in the file's shape signature) so hosts can evaluate in
    # batches; the file's default shape is still batch 1, as benchmarks run it.
    if len(model.inputs) > 1:  # fixed sizes (user.py checks), named as the model names them
        return [
            tf.TensorSpec(shape=(None, *t.shape[1:]), dtype=t.dtype, name=t.name)
            for t in model.inputs
        ]
    dtype = model.inputs[0].dtype if model.inputs else "float32"
    return [tf.TensorSpec(shape=(None, *input_shape[1:]), dtype=dtype, name="input")]


def _from_keras_model(model: keras.Model, input_shape: tuple[int, ...], folder: str) -> Any:
    # Concrete functions traced from a Keras 3 model convert with unfrozen (NaN)
    # weights in TF 2.21, so only the Keras and SavedModel paths are used.
    return tf.lite.TFLiteConverter.from_keras_model(model)


def _from_saved_model(model: keras.Model, input_shape: tuple[int, ...], folder: str) -> Any:
    export = keras.export.ExportArchive()
    export.track(model)
    export.add_endpoint(
        "serve",
        lambda *x: model(list(x) if len(x) > 1 else x[0], training=False),
        input_signature=_signature(model, input_shape),
    )
    export.write_out(folder, verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(folder)

"""A Keras model's outputs on many inputs, called eagerly batch by batch.

``Model.predict`` traces a new graph for every model it meets. A search scores a new
(rewritten) model each time, once or twice, so the tracing is paid every time and costs
about as much as the inference itself (ResNet-20 on 359 validation inputs: predict 0.7 s,
the eager calls below about 0.45 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

MAX_BATCH = 128
# Input values per call (1 MB of float32). Activations grow with the channels: SRCNN's
# 64x64 patches go 64 a call, and each 64-channel layer's output is 67 MB.
BATCH_ELEMENTS = 1 << 18


def batch_size(input_shape: tuple[int, ...]) -> int:
    """Inputs per call for inputs of ``input_shape`` (without the batch axis): up to
    ``MAX_BATCH``, fewer for large inputs.

    Args:
        input_shape: one input's shape, without the batch axis.

    Returns:
        ``BATCH_ELEMENTS`` divided by one input's values, between 1 and ``MAX_BATCH``.
    """
    per_input = int(np.prod(input_shape)) or 1
    return max(1, min(MAX_BATCH, BATCH_ELEMENTS // per_input))


def eager_predict(model: Any, x: np.ndarray) -> Any:
    """``model`` in inference mode on ``x``, as ``predict`` returns it.

    Args:
        model: a Keras model (anything called as ``model(batch, training=False)``).
        x: the inputs, batch axis first; not empty.

    Returns:
        The outputs for every row of ``x``, in order: one array, a list of arrays for a model
        with a list of outputs, a dict for one with named outputs.
    """
    step = batch_size(x.shape[1:])
    parts = [model(x[i : i + step], training=False) for i in range(0, len(x), step)]
    first = parts[0]
    if isinstance(first, Mapping):
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in first}
    if isinstance(first, list | tuple):
        return [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(first))]
    return np.concatenate([np.asarray(p) for p in parts])


def model_outputs(model: Any, x: np.ndarray) -> Any:
    """``eager_predict`` as a metric reads it.

    Args:
        model: a Keras model.
        x: the inputs, batch axis first.

    Returns:
        One array, or for a model with several outputs a dict by output name (as the TFLite
        file's signature names them).
    """
    return named_outputs(model, eager_predict(model, x))


def named_outputs(model: Any, outputs: Any) -> Any:
    """A list of outputs as a dict by the model's output names; anything else as it is.

    Args:
        model: the model that gave ``outputs`` (its ``output_names``).
        outputs: what ``eager_predict`` returned.

    Returns:
        Output name -> array for a list or tuple; ``outputs`` unchanged otherwise.
    """
    if isinstance(outputs, list | tuple):
        return dict(zip(model.output_names, outputs, strict=True))
    return outputs

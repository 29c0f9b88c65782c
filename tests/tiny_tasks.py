"""Small real Keras tasks for tests of the profiles: a conv net on random 10-class data,
shaped like a Task (model, validation data, metric, input shape, calibration)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def conv_task(
    size: int, channels: int, filters: int, examples: int, flatten: bool = True
) -> SimpleNamespace:
    """Two ``filters``-wide 3x3 convs (``conv1``, ``conv2``) on ``size`` x ``size`` x
    ``channels`` inputs and a Dense head (``head``) after Flatten, or after global average
    pooling when ``flatten`` is False (the convs then hold nearly all the compute)."""
    import keras

    from devicefit.evaluators.metrics import get_metric

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten()(x) if flatten else keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(x)
    rng = np.random.default_rng(0)
    x_val = rng.random((examples, size, size, channels), dtype=np.float32)
    return SimpleNamespace(
        model=keras.Model(inputs, outputs),
        data=SimpleNamespace(x_val=x_val, y_val=rng.integers(0, 10, examples)),
        metric=get_metric("accuracy"),
        input_shape=(1, size, size, channels),
        calibration=x_val[:8],
    )

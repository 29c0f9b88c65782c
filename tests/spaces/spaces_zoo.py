"""A small model zoo for the technique tests: one of each graph shape the techniques must handle.

Weights and BatchNormalization statistics are random (not trained) so that a
wrong slice or a wrong tap shows up as a numerical difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from devicefit.quiet import silence_tensorflow

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers


@dataclass(frozen=True)
class ZooModel:
    name: str
    model: keras.Model
    input_shape: tuple[int, ...]  # the shape the file ships with, batch 1

    def inputs(self, count: int = 4, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.normal(size=(count, *self.input_shape[1:])).astype(np.float32)


def randomize_batchnorm(model: keras.Model, seed: int = 0) -> None:
    """Non-trivial BN statistics, so pruning must slice them with the right channels."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]
            values = [rng.uniform(0.5, 1.5, size=s).astype(np.float32) for s in shapes]
            values[1] -= 1.0  # beta and moving mean centred on 0
            values[2] -= 1.0
            layer.set_weights(values)


def sequential_cnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            L.Conv2D(16, 3, padding="same", name="conv1"),
            L.BatchNormalization(name="bn1"),
            L.ReLU(name="relu1"),
            L.MaxPooling2D(name="pool1"),
            L.Conv2D(16, 3, padding="valid", activation="relu", name="conv2"),
            L.Flatten(name="flatten"),
            L.Dense(24, activation="relu", name="fc1"),
            L.Dropout(0.2, name="drop"),
            L.Dense(5, name="logits"),
        ],
        name="seq_cnn",
    )


def residual_cnn() -> keras.Model:
    inputs = keras.Input((10, 10, 3), name="image")
    stem = L.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inputs)
    x = L.Conv2D(16, 3, padding="same", name="res_a")(stem)
    x = L.BatchNormalization(name="res_bn")(x)
    x = L.Activation("relu", name="res_relu")(x)
    x = L.Conv2D(16, 3, padding="same", name="res_b")(x)
    x = L.Add(name="add")([stem, x])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(32, activation="relu", name="fc")(x)
    outputs = L.Dense(4, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="residual")


def mlp() -> keras.Model:
    inputs = keras.Input((48,), name="features")
    x = L.Dense(64, activation="relu", name="d1")(inputs)
    x = L.Dense(64, activation="tanh", name="d2")(x)
    outputs = L.Dense(3, name="d3")(x)
    return keras.Model(inputs, outputs, name="mlp")


def srcnn() -> keras.Model:
    inputs = keras.Input((None, None, 1), name="lowres")
    x = L.Conv2D(32, 9, padding="same", activation="relu", name="patch")(inputs)
    x = L.Conv2D(16, 1, padding="same", activation="relu", name="map")(x)
    outputs = L.Conv2D(1, 5, padding="same", name="recon")(x)
    return keras.Model(inputs, outputs, name="srcnn")


ZOO: dict[str, tuple[Callable[[], keras.Model], tuple[int, ...]]] = {
    "sequential_cnn": (sequential_cnn, (1, 12, 12, 3)),
    "residual_cnn": (residual_cnn, (1, 10, 10, 3)),
    "mlp": (mlp, (1, 48)),
    "srcnn": (srcnn, (1, 16, 16, 1)),
}


def build_zoo_model(name: str) -> ZooModel:
    builder, input_shape = ZOO[name]
    keras.utils.set_random_seed(1)
    model = builder()
    randomize_batchnorm(model)
    return ZooModel(name, model, input_shape)

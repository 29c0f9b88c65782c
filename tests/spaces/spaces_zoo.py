"""A small model zoo for the technique tests: one of each graph shape the techniques must handle.

Weights and BatchNormalization statistics are random (not trained) so that a
wrong slice or a wrong tap shows up as a numerical difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.tasks.named_inputs import NamedInputs

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers


@dataclass(frozen=True)
class ZooModel:
    name: str
    model: keras.Model
    input_shape: tuple[int, ...]  # the shape the file ships with, batch 1

    def inputs(self, count: int = 4, seed: int = 0) -> Any:
        """Random inputs: an array, or for several inputs one per input, by name."""
        rng = np.random.default_rng(seed)
        if len(self.model.inputs) > 1:
            return NamedInputs(
                {
                    t.name: rng.normal(size=(count, *t.shape[1:])).astype(np.float32)
                    for t in self.model.inputs
                }
            )
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


def unet() -> keras.Model:
    """Encoder-decoder: skip connections by Concatenate, up-sampling by Conv2DTranspose."""
    inputs = keras.Input((16, 16, 3), name="image")
    e1 = L.Conv2D(8, 3, padding="same", activation="relu", name="enc1")(inputs)
    e2 = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="enc2")(e1)
    b = L.Conv2D(16, 3, padding="same", name="bottleneck")(e2)
    b = L.BatchNormalization(name="bottleneck_bn")(b)
    b = L.ReLU(name="bottleneck_relu")(b)
    u = L.Conv2DTranspose(8, 2, strides=2, padding="same", name="up")(b)
    x = L.Concatenate(name="skip")([u, e1])
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="dec")(x)
    outputs = L.Conv2D(2, 1, name="mask")(x)
    return keras.Model(inputs, outputs, name="unet")


def separable_residual() -> keras.Model:
    """Xception-like: SeparableConv2D blocks with BatchNorm everywhere and residual Adds."""
    inputs = keras.Input((16, 16, 3), name="image")
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.Activation("relu", name="stem_relu")(x)
    for i in (1, 2):
        y = L.SeparableConv2D(16, 3, padding="same", use_bias=False, name=f"sep{i}a")(x)
        y = L.BatchNormalization(name=f"sep{i}a_bn")(y)
        y = L.Activation("relu", name=f"sep{i}a_relu")(y)
        y = L.SeparableConv2D(16, 3, padding="same", use_bias=False, name=f"sep{i}b")(y)
        y = L.BatchNormalization(name=f"sep{i}b_bn")(y)
        x = L.Add(name=f"add{i}")([x, y])
    shortcut = L.Conv2D(32, 1, strides=2, use_bias=False, name="shortcut")(x)
    y = L.SeparableConv2D(32, 3, padding="same", name="sep3")(x)
    y = L.MaxPooling2D(3, strides=2, padding="same", name="pool")(y)
    x = L.Add(name="add3")([shortcut, y])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(5, name="logits")(x)
    return keras.Model(inputs, outputs, name="xception_mini")


def reshape_head() -> keras.Model:
    """Reshape as users write heads: (H, W, C) -> (H*W, C), a Dense on every position,
    then a Reshape that flattens into the classifier."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = L.BatchNormalization(name="conv_bn")(x)
    x = L.ReLU(name="conv_relu")(x)
    x = L.Reshape((64, 8), name="to_tokens")(x)
    x = L.Dense(6, activation="relu", name="per_token")(x)
    x = L.Reshape((-1,), name="to_vector")(x)
    outputs = L.Dense(4, name="logits")(x)
    return keras.Model(inputs, outputs, name="reshape_head")


def two_inputs() -> keras.Model:
    """An image and a vector of side information (a camera's settings, a sensor's
    reading), as multimodal heads take them: a residual conv backbone on the image, a
    Dense on the vector, joined by a Concatenate before the classifier."""
    image = keras.Input((10, 10, 3), name="image")
    side = keras.Input((6,), name="side")
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(image)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    y = L.Conv2D(16, 3, padding="same", activation="relu", name="res_a")(x)
    y = L.Conv2D(16, 3, padding="same", name="res_b")(y)
    x = L.Add(name="res_add")([x, y])
    x = L.Conv2D(24, 3, strides=2, padding="same", activation="relu", name="down")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    s = L.Dense(12, activation="relu", name="side_dense")(side)
    joined = L.Concatenate(name="join")([x, s])
    joined = L.Dense(16, activation="relu", name="fc")(joined)
    outputs = L.Dense(4, name="logits")(joined)
    return keras.Model([image, side], outputs, name="two_inputs")


def mobilenet_v2() -> keras.Model:
    return keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    )


def resnet50() -> keras.Model:
    return keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, classes=10)


def digits_task() -> keras.Model:
    from devicefit.tasks import digits

    return digits.build_model()


def sr_task() -> keras.Model:
    from devicefit.tasks import sr

    return sr.build_model()


ZOO: dict[str, tuple[Callable[[], keras.Model], tuple[int, ...]]] = {
    "sequential_cnn": (sequential_cnn, (1, 12, 12, 3)),
    "residual_cnn": (residual_cnn, (1, 10, 10, 3)),
    "mlp": (mlp, (1, 48)),
    "srcnn": (srcnn, (1, 16, 16, 1)),
    "unet": (unet, (1, 16, 16, 3)),
    "separable_residual": (separable_residual, (1, 16, 16, 3)),
    "reshape_head": (reshape_head, (1, 8, 8, 3)),
    "two_inputs": (two_inputs, (1, 10, 10, 3)),  # the first input's shape
    "mobilenet_v2": (mobilenet_v2, (1, 32, 32, 3)),
    "resnet50": (resnet50, (1, 32, 32, 3)),
    "digits_task": (digits_task, (1, 32, 32, 1)),
    "sr_task": (sr_task, (1, 24, 24, 1)),
}


def build_zoo_model(name: str) -> ZooModel:
    builder, input_shape = ZOO[name]
    keras.utils.set_random_seed(1)
    model = builder()
    randomize_batchnorm(model)
    return ZooModel(name, model, input_shape)

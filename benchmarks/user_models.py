"""Two classification models of the shapes users bring, for issue 14's benchmark.

Neither is designed for devicefit: a CIFAR-style ResNet-20 (He et al., 2016: three
stages of three basic residual blocks, 16/32/64 channels, 1x1 projection shortcuts)
and Keras's own MobileNetV2 (``keras.applications``, ``weights=None``: inverted
residuals with depthwise convolutions and ReLU6). Both are trained here from scratch
on scikit-learn's digits (the data ships with the package; nothing is downloaded) and
saved as a ``.keras`` file plus an ``.npz`` of splits, which the search then takes
through ``--model``/``--data`` exactly as a user's model would.

    python benchmarks/user_models.py resnet20     # prints the two paths
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from devicefit.quiet import silence_tensorflow

silence_tensorflow()

import keras  # noqa: E402

FOLDER = Path("results/benchmarks/models")
# Bump when a model, its data or its training changes: it names the files.
VERSION = "v1"
SEED = 0
# name: (input size, epochs)
MODELS = {"resnet20": (32, 30), "mobilenetv2": (64, 30)}


def digits_at(size: int) -> dict[str, np.ndarray]:
    """The built-in digits splits (60/20/20, upscaled to 32x32), resized to ``size``."""
    from skimage.transform import resize

    from devicefit.tasks.digits import load_data

    splits = load_data()
    out: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        x = getattr(splits, f"x_{split}")
        if x.shape[1] != size:
            x = resize(x, (len(x), size, size, 1), order=1, preserve_range=True)
        out[f"x_{split}"] = x.astype(np.float32)
        out[f"y_{split}"] = getattr(splits, f"y_{split}")
    return out


def resnet20(size: int, classes: int = 10) -> keras.Model:
    layers = keras.layers

    def conv_bn(x: keras.KerasTensor, filters: int, stride: int, name: str) -> keras.KerasTensor:
        x = layers.Conv2D(filters, 3, stride, padding="same", use_bias=False, name=f"{name}_conv")(
            x
        )
        return layers.BatchNormalization(name=f"{name}_bn")(x)

    inputs = keras.Input((size, size, 1), name="image")
    x = layers.ReLU(name="stem_relu")(conv_bn(inputs, 16, 1, "stem"))
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(3):
            name = f"stage{stage}_block{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            y = layers.ReLU(name=f"{name}_relu1")(conv_bn(x, filters, stride, f"{name}_a"))
            y = conv_bn(y, filters, 1, f"{name}_b")
            if stride != 1 or x.shape[-1] != filters:
                x = layers.Conv2D(filters, 1, stride, use_bias=False, name=f"{name}_proj")(x)
                x = layers.BatchNormalization(name=f"{name}_proj_bn")(x)
            x = layers.ReLU(name=f"{name}_relu2")(layers.Add(name=f"{name}_add")([x, y]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet20")


def mobilenetv2(size: int, classes: int = 10) -> keras.Model:
    return keras.applications.MobileNetV2(
        input_shape=(size, size, 1), weights=None, classes=classes, classifier_activation=None
    )


def train(model: keras.Model, data: dict[str, np.ndarray], epochs: int) -> keras.Model:
    # Keras's default batch-norm momentum (0.99, MobileNetV2's 0.999) leaves the moving
    # statistics far from the data after a few hundred steps: inference would collapse.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    steps = epochs * int(np.ceil(len(data["x_train"]) / 32))
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        data["x_train"],
        data["y_train"],
        validation_data=(data["x_val"], data["y_val"]),
        batch_size=32,
        epochs=epochs,
        verbose=2,
    )
    return model


def prepare(name: str, folder: Path = FOLDER) -> tuple[Path, Path]:
    """The model and data files of ``name``, trained and written on first use."""
    size, epochs = MODELS[name]
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / f"{name}-digits{size}-{VERSION}.keras"
    data_path = folder / f"digits{size}.npz"
    if not data_path.exists():
        np.savez(data_path, **digits_at(size))
    if not model_path.exists():
        keras.utils.set_random_seed(SEED)
        data = dict(np.load(data_path))
        build = resnet20 if name == "resnet20" else mobilenetv2
        model = train(build(size), data, epochs)
        guesses = np.argmax(model.predict(data["x_test"], verbose=0), -1)
        accuracy = float(np.mean(guesses == data["y_test"]))
        print(f"{name}: test accuracy {100 * accuracy:.2f}%, {model.count_params():,} parameters")
        model.save(model_path.with_suffix(".partial.keras"))
        model_path.with_suffix(".partial.keras").rename(model_path)
    return model_path, data_path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=sorted(MODELS))
    args = parser.parse_args()
    for path in prepare(args.name):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

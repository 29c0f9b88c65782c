"""A detector-shaped model for the several-outputs tests: a shared convolutional backbone
(with one residual block, so every technique has something to do) and two heads, a class
head ("cls") and a box-regression head ("box"), with data made here: a square of one of
three sizes (the class) at a random place (the box's corner)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devicefit.quiet import silence_tensorflow

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers

SCORE = """import numpy as np

def detection_score(y_true, y_pred):
    accuracy = np.mean(y_pred["cls"].argmax(-1) == y_true["cls"].reshape(-1))
    error = np.mean(np.abs(y_pred["box"] - y_true["box"]))
    return 100 * accuracy - 100 * error

detection_score.max_drop = 3.0
"""


def two_heads(side_input: bool = False) -> keras.Model:
    """With ``side_input``, a second input "hint" (a noisy guess of the box, as a
    tracker's previous frame would give) joins the features before the heads."""
    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 1), name="image")
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="stem")(image)
    y = L.Conv2D(16, 3, padding="same", activation="relu", name="res_a")(x)
    y = L.Conv2D(16, 3, padding="same", name="res_b")(y)
    x = L.ReLU(name="res_relu")(L.Add(name="res_add")([x, y]))
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="down")(x)
    features = L.GlobalAveragePooling2D(name="gap")(x)
    inputs: list = [image]
    if side_input:
        hint = keras.Input((2,), name="hint")
        features = L.Concatenate(name="join")([features, L.Dense(8, name="hint_dense")(hint)])
        inputs.append(hint)
    heads = [L.Dense(3, name="cls")(features), L.Dense(2, name="box")(features)]
    return keras.Model(inputs if side_input else image, heads)


def squares(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.zeros((n, 16, 16, 1), np.float32)
    classes = rng.integers(0, 3, n)
    boxes = np.zeros((n, 2), np.float32)
    for k in range(n):
        row, col = rng.integers(2, 12, 2)
        side = (2, 3, 4)[classes[k]]
        x[k, row : row + side, col : col + side, 0] = 1.0
        boxes[k] = (row / 16, col / 16)
    return x + rng.normal(0, 0.05, x.shape).astype(np.float32), classes, boxes


def write_two_head_task(
    folder: Path, sizes: tuple[int, int, int] = (600, 150, 150), side_input: bool = False
) -> Path:
    """``folder/net.keras`` (trained briefly), ``folder/data.npz`` (``x_<split>``,
    ``y_<split>_cls``, ``y_<split>_box``; with ``side_input`` the inputs are
    ``x_<split>_image`` and ``x_<split>_hint``) and ``folder/score.py`` (both heads in one
    number); returns ``folder``."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        x, classes, boxes = squares(n, rng)
        arrays[f"y_{split}_cls"], arrays[f"y_{split}_box"] = classes, boxes
        if side_input:
            arrays[f"x_{split}_image"] = x
            arrays[f"x_{split}_hint"] = boxes + rng.normal(0, 0.1, boxes.shape).astype(np.float32)
        else:
            arrays[f"x_{split}"] = x
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "data.npz", **arrays)
    model = two_heads(side_input)
    loss = [keras.losses.SparseCategoricalCrossentropy(from_logits=True), "mse"]
    model.compile("adam", loss)
    targets = [arrays["y_train_cls"], arrays["y_train_box"]]
    x_train = (
        {"image": arrays["x_train_image"], "hint": arrays["x_train_hint"]}
        if side_input
        else arrays["x_train"]
    )
    model.fit(x_train, targets, epochs=15, verbose=0)
    model.save(folder / "net.keras")
    (folder / "score.py").write_text(SCORE)
    return folder

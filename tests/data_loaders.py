"""Data-loader files (``--data FILE.py:FUNCTION``) for the tests, over scikit-learn's
digits: each function returns tf.data pipelines, and appends a line to ``calls.txt``
beside the file every time it runs, so a test can count the loader's runs."""

from __future__ import annotations

from pathlib import Path

LOADERS = '''
from pathlib import Path

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

CALLS = Path(__file__).with_name("calls.txt")


def _count():
    with CALLS.open("a") as log:
        log.write("called\\n")


def digits():
    d = load_digits()
    return (d.images[..., None] / 16.0).astype("float32"), d.target.astype("int64")


def _scale(x, y):
    return tf.cast(x, tf.float32) / 16.0, y


def pipeline():
    """A real input pipeline: raw 0..16 pixels scaled by a map, batched; validation
    single samples; test in odd batches."""
    _count()
    d = load_digits()
    x, y = d.images[..., None], d.target.astype("int64")
    train = tf.data.Dataset.from_tensor_slices((x[:1200], y[:1200])).map(_scale).batch(64)
    val = tf.data.Dataset.from_tensor_slices((x[1200:1500], y[1200:1500])).map(_scale)
    test = tf.data.Dataset.from_tensor_slices((x[1500:], y[1500:])).map(_scale).batch(7)
    return {"train": train, "val": val, "test": test}


def two_splits():
    _count()
    x, y = digits()
    return (
        tf.data.Dataset.from_tensor_slices((x[:200], y[:200])).batch(32),
        tf.data.Dataset.from_tensor_slices((x[200:300], y[200:300])).batch(32),
    )


def generated():
    """From a Python generator: tf.data does not know its length."""
    _count()
    x, y = digits()

    def rows(start, stop):
        def gen():
            for i in range(start, stop):
                yield x[i], y[i]
        return gen

    spec = (tf.TensorSpec((8, 8, 1), tf.float32), tf.TensorSpec((), tf.int64))
    return [tf.data.Dataset.from_generator(rows(a, b), output_signature=spec)
            for a, b in ((0, 100), (100, 150), (150, 200))]


def two_heads():
    _count()
    x, y = digits()
    labels = {"cls": y, "even": (y % 2).astype("float32")[:, None]}
    made = tf.data.Dataset.from_tensor_slices((x[:300], {k: v[:300] for k, v in labels.items()}))
    return made.take(200).batch(50), made.skip(200).take(50), made.skip(250).batch(25)


def two_inputs(batch=64):
    """Inputs by name for a model with inputs "image" and "hint" (ids of 0..4, int64):
    batched training, single-sample validation."""
    _count()
    x, y = digits()
    inputs = {"image": x[:300], "hint": (y[:300] % 5)[:, None]}
    made = tf.data.Dataset.from_tensor_slices((inputs, y[:300]))
    return made.take(200).batch(batch), made.skip(200).take(60), made.skip(260).batch(16)


def two_inputs_rebatched():
    """The same rows as two_inputs, in batches of another size."""
    return two_inputs(batch=24)


def raises():
    raise FileNotFoundError("no such folder: /data/train")


def gives_a_number():
    return 3


def gives_one_split():
    x, y = digits()
    return (tf.data.Dataset.from_tensor_slices((x, y)),)


def gives_inputs_alone():
    x, _ = digits()
    return [tf.data.Dataset.from_tensor_slices(x)] * 3


def gives_two_sizes():
    x, y = digits()
    small = tf.data.Dataset.from_tensor_slices((x[:10, :4, :4], y[:10]))
    big = tf.data.Dataset.from_tensor_slices((x[:10], y[:10]))
    return small.concatenate(big.map(lambda a, b: (a[:5, :5], b))), big, big


def gives_an_empty_split():
    x, y = digits()
    made = tf.data.Dataset.from_tensor_slices((x[:10], y[:10]))
    return made, made.take(0), made


def repeats():
    x, y = digits()
    made = tf.data.Dataset.from_tensor_slices((x[:20], y[:20]))
    return made.repeat(), made, made


def gives_names():
    x, y = digits()
    names = tf.constant([str(v) for v in y[:20]])
    made = tf.data.Dataset.from_tensor_slices((x[:20], names))
    return made, made, made


def _corrupt(a):
    raise ValueError("corrupt record")


def fails_midway():
    x, y = digits()
    made = tf.data.Dataset.from_tensor_slices((x[:10], y[:10]))
    broken = made.map(lambda a, b: (tf.numpy_function(_corrupt, [a], tf.float32), b))
    return made, broken, made
'''


def write_loaders(folder: Path) -> Path:
    """``loaders.py`` in ``folder`` (its ``calls.txt`` counts the loaders' runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "loaders.py"
    path.write_text(LOADERS)
    return path


def calls(loaders: Path) -> int:
    log = loaders.with_name("calls.txt")
    return len(log.read_text().splitlines()) if log.exists() else 0

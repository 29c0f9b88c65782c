"""Built-in task ``digits``: scikit-learn's handwritten digits, a deliberately over-sized CNN.

The data ships with scikit-learn (no download). The model is the kind people
compress: VGG-style 3x3 convolutions with batch norm and a wide dense head that
holds most of the weights. Its float32 TFLite file must take at least 1 ms per
image on one thread of a 2-core x86 machine (tests/tasks/test_digits.py), so
compression has time to save. The 2-core VMs we run on differ by 2x or more: the
first version (two full-resolution convolutions, 42 MMACs) took 0.5 to 2.1 ms
on them, 1.1 ms on the Xeon (AVX-512, AMX); the second (four, 118 MMACs) 2.2 ms
there but 0.99 to 1.10 ms on an AMD EPYC Zen 5, so this one has five (155
MMACs in all, most of the time compute in them); the dense head's 16 MB of
weights add a memory-bound part that varies more between machines. Training
from scratch takes about a minute on two cores.
"""

from __future__ import annotations

import numpy as np

from devicefit.evaluators.custom_metric import metric_for
from devicefit.quiet import silence_tensorflow
from devicefit.tasks.base import Splits, Task
from devicefit.tasks.cache import cached_model

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()

NAME = "digits"
# Bump when the data, architecture or training recipe changes: it names the cache file.
RECIPE = "v3"
SIZE = 32
SEED = 0
EPOCHS = 6


def load_data(seed: int = SEED) -> Splits:
    """60/20/20 stratified split of the 1,797 digits, upscaled to 32x32x1 in [0, 1].

    Args:
        seed: the splits' random state; the default gives the task's own splits.

    Returns:
        Float32 images of shape (n, 32, 32, 1) with int64 class labels 0..9 per split.
    """
    from skimage.transform import resize
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # pixel values are 0..16
    # 8x8 is too small for a realistic conv stack (two poolings leave 2x2);
    # bilinear upscaling keeps the strokes smooth and values within [0, 1].
    x = resize(images, (len(images), SIZE, SIZE), order=1, preserve_range=True)
    x = x.astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.4, stratify=y, random_state=seed
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed
    )
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test)


def build_model() -> keras.Model:
    """Conv 32-64-64-64 / pool / conv 64-64 / pool / dense 1024 / dense 10 (logits).

    Returns:
        A new, untrained and uncompiled model taking (batch, 32, 32, 1) images.
    """
    layers = keras.layers

    def conv_bn_relu(filters: int, name: str) -> list[keras.layers.Layer]:
        """A 3x3 convolution, batch norm and ReLU, for one block of the stack.

        Args:
            filters: the convolution's output channels.
            name: the block's name, the prefix of its three layers' names.

        Returns:
            The three layers, in order, to unpack into the Sequential.
        """
        # Bias-free convs before batch norm: the BN offset makes a bias redundant.
        # momentum 0.9: with ~100 steps of training the default 0.99 leaves the
        # moving statistics far from the data and inference accuracy collapses.
        return [
            layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv"),
            layers.BatchNormalization(momentum=0.9, name=f"{name}_bn"),
            layers.ReLU(name=f"{name}_relu"),
        ]

    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1), name="image"),
            *conv_bn_relu(32, "block1a"),
            *conv_bn_relu(64, "block1b"),
            # Three more full-resolution convs (113 of the 155 MMACs): compute-bound time
            # that channel pruning, low-rank and smaller kernels can all cut.
            *conv_bn_relu(64, "block1c"),
            *conv_bn_relu(64, "block1d"),
            *conv_bn_relu(64, "block1e"),
            layers.MaxPooling2D(name="pool1"),
            *conv_bn_relu(64, "block2a"),
            *conv_bn_relu(64, "block2b"),
            layers.MaxPooling2D(name="pool2"),
            layers.Flatten(name="flatten"),
            # 4096x1024 weights: at batch 1 this layer is memory-bound on device,
            # the textbook target for low-rank factorization and pruning.
            layers.Dense(1024, activation="relu", name="fc1"),
            layers.Dropout(0.5, name="dropout"),
            layers.Dense(10, name="logits"),
        ],
        name="digits_cnn",
    )


def train_model(data: Splits, callbacks: list[keras.callbacks.Callback]) -> keras.Model:
    """Train a new :func:`build_model` on the training split (Adam, cosine decay).

    Args:
        data: the task's splits; only the training split is used.
        callbacks: passed to ``fit`` (the cache's progress bar).

    Returns:
        The trained model, still compiled (the cache saves an uncompiled copy).
    """
    model = build_model()
    steps = EPOCHS * int(np.ceil(len(data.x_train) / 32))
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, steps, alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=32,
        epochs=EPOCHS,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    return model


def load(metric: str | None = None) -> Task:
    """The digits task; trains and caches the model on first use.

    Args:
        metric: ``--metric``: a built-in classification metric or a user's
            ``FILE.py:FUNCTION``; None for accuracy.

    Returns:
        The task, shipped at input shape (1, 32, 32, 1).

    Raises:
        UsageError: ``metric`` is not a known metric, or the user's function it names
            cannot be loaded.
    """
    data = load_data()
    model = cached_model(
        NAME, f"digits-cnn-{RECIPE}.keras", lambda cbs: train_model(data, cbs), seed=SEED
    )
    return Task(
        name=NAME,
        model=model,
        data=data,
        metric=metric_for(metric or "accuracy", "classification"),
        input_shape=(1, SIZE, SIZE, 1),
        info={"classes": 10, "test_samples": len(data.x_test)},
    )

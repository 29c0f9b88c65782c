"""Built-in task ``sr``: SRCNN 9-5-5, x3 super-resolution of the luma (Y) channel.

Photos are scikit-image's bundled samples (no download). Each photo's Y channel
(BT.601, in [0, 1]) is the target; the model input is the same image shrunk x3
with anti-aliasing and upscaled back with (scikit-image's) cubic interpolation,
as in SRCNN. Training, validation and test photos are disjoint, so the test
PSNR is on scenes the model never saw; all splits are 64x64 crops with some
texture. The model is fully convolutional and ships at 64x64.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from devicefit.evaluators.custom_metric import metric_for
from devicefit.evaluators.metrics import psnr
from devicefit.quiet import silence_tensorflow
from devicefit.tasks.base import Splits, Task
from devicefit.tasks.cache import cached_model

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()

NAME = "sr"
# Bump when the data, architecture or training recipe changes: it names the cache file.
RECIPE = "v1"
SCALE = 3
CROP = 64
SEED = 0
TRAIN_PHOTOS = (
    "camera", "coins", "moon", "brick", "grass", "gravel",
    "immunohistochemistry", "hubble_deep_field", "page", "text", "clock",
)  # fmt: skip
VAL_PHOTOS = ("chelsea", "rocket")  # skimage's "cat" is chelsea again: unused
TEST_PHOTOS = ("astronaut", "coffee")
TRAIN_PATCHES = 1600
# Fine-tuning sees every training patch (about 20 s per epoch for the full model on one
# core): with a third of them, pruned-and-shrunk SRCNNs recovered 0.1-0.25 dB less
# (7/3/3 kernels + 30% pruning: -0.18 vs -0.05 dB; 5/1/1 + 30%: -0.44 vs -0.20 dB).
FINETUNE_PATCHES = TRAIN_PATCHES
VAL_CROPS = 48
BATCH = 4
PEAK_LR = 2e-3
FLAT_STD = 0.02  # crops whose ground truth varies less than this are skipped


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 Y in [0, 1] (16..235 of 255) of a grey, RGB or RGBA uint8 image.

    Args:
        image: a photo as ``skimage.data`` gives it: (H, W), (H, W, 3) or (H, W, 4).

    Returns:
        The (H, W) float32 luma channel.
    """
    from skimage.color import gray2rgb, rgb2ycbcr, rgba2rgb

    if image.ndim == 2:
        image = gray2rgb(image)  # grey photos get the same Y range as colour ones
    elif image.shape[-1] == 4:
        image = rgba2rgb(image)
    return (rgb2ycbcr(image)[..., 0] / 255.0).astype(np.float32)


def degrade(target: np.ndarray) -> np.ndarray:
    """Shrink x3 with anti-aliasing, then bicubic upscale back: the model's input.

    Args:
        target: a ground-truth (H, W) luma image in [0, 1].

    Returns:
        The blurred (H, W) float32 image in [0, 1] the model learns to sharpen.
    """
    from skimage.transform import resize

    h, w = target.shape
    small = resize(target, (h // SCALE, w // SCALE), order=3, anti_aliasing=True)
    return np.clip(resize(small, (h, w), order=3), 0.0, 1.0).astype(np.float32)


def photo_pair(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(bicubic input, ground-truth Y) of one bundled photo, cropped to a multiple of 3.

    Args:
        name: the ``skimage.data`` function of the photo, e.g. ``"camera"``.

    Returns:
        The model input and its target, both (H, W) float32 of the same size.
    """
    from skimage import data

    y = luma(getattr(data, name)())
    h, w = (y.shape[0] // SCALE) * SCALE, (y.shape[1] // SCALE) * SCALE
    y = y[:h, :w]
    return degrade(y), y


def _textured(target: np.ndarray) -> bool:
    # Flat crops (sky, background) have ~45 dB PSNR where any tiny error costs
    # whole dBs: they would swamp a mean-of-crops PSNR and teach nothing.
    return float(target.std()) >= FLAT_STD


def grid_crops(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping textured 64x64 crops of each photo (input, target), NHWC.

    Args:
        pairs: (input, target) photos as :func:`photo_pair` gives them.

    Returns:
        Inputs and targets of shape (n, 64, 64, 1), crops too flat to teach skipped.
    """
    xs, ys = [], []
    for x, y in pairs:
        for i in range(0, y.shape[0] - CROP + 1, CROP):
            for j in range(0, y.shape[1] - CROP + 1, CROP):
                if _textured(y[i : i + CROP, j : j + CROP]):
                    xs.append(x[i : i + CROP, j : j + CROP])
                    ys.append(y[i : i + CROP, j : j + CROP])
    return np.stack(xs)[..., None], np.stack(ys)[..., None]


def random_patches(
    pairs: list[tuple[np.ndarray, np.ndarray]], count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random textured 64x64 training patches.

    Args:
        pairs: (input, target) photos as :func:`photo_pair` gives them.
        count: how many patches to draw (patches may overlap or repeat).
        rng: draws the photos and positions; the caller's seed makes them repeatable.

    Returns:
        Inputs and targets of shape (count, 64, 64, 1).
    """
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    while len(xs) < count:
        x, y = pairs[rng.integers(len(pairs))]
        i = rng.integers(0, y.shape[0] - CROP + 1)
        j = rng.integers(0, y.shape[1] - CROP + 1)
        target = y[i : i + CROP, j : j + CROP]
        if not _textured(target):
            continue
        xs.append(x[i : i + CROP, j : j + CROP])
        ys.append(target)
    return np.stack(xs)[..., None], np.stack(ys)[..., None]


def load_data(seed: int = SEED) -> Splits:
    """Training patches of the training photos; validation and test crops of others.

    Args:
        seed: draws the training patches and the validation crops kept; the default
            gives the task's own splits.

    Returns:
        Bicubic inputs with their ground-truth Y as labels, (n, 64, 64, 1) float32.
    """
    rng = np.random.default_rng(seed)
    x_train, y_train = random_patches([photo_pair(n) for n in TRAIN_PHOTOS], TRAIN_PATCHES, rng)
    x_val, y_val = grid_crops(photo_pair(n) for n in VAL_PHOTOS)
    keep = np.sort(rng.choice(len(x_val), size=min(VAL_CROPS, len(x_val)), replace=False))
    x_test, y_test = grid_crops(photo_pair(n) for n in TEST_PHOTOS)
    return Splits(x_train, y_train, x_val[keep], y_val[keep], x_test, y_test)


def build_model() -> keras.Model:
    """SRCNN 9-5-5 (64 and 32 filters), any input size.

    Returns:
        A new, untrained and uncompiled model mapping (batch, H, W, 1) to the same shape.
    """
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((None, None, 1), name="bicubic"),
            layers.Conv2D(64, 9, padding="same", activation="relu", name="patch_extraction",
                          kernel_initializer="he_normal"),
            layers.Conv2D(32, 5, padding="same", activation="relu", name="nonlinear_mapping",
                          kernel_initializer="he_normal"),
            layers.Conv2D(1, 5, padding="same", name="reconstruction"),
        ],
        name="srcnn_955",
    )  # fmt: skip


def start_as_bicubic(model: keras.Model) -> None:
    """Initialise so the network outputs its input exactly (the bicubic image).

    Plain SRCNN spends its first many thousand steps just learning to pass the
    image through; here channel 0 of each layer is a centred delta (inputs are
    >= 0, so ReLU keeps them), the output layer's other weights start at zero,
    and training only has to learn the detail bicubic misses.

    Args:
        model: an SRCNN from :func:`build_model`; its weights are overwritten in place.
    """
    first, mid, last = model.layers
    for layer, tap in ((first, 4), (mid, 2)):
        kernel, bias = layer.get_weights()
        kernel[..., 0] = 0.0
        kernel[tap, tap, 0, 0] = 1.0
        bias[0] = 0.0
        layer.set_weights([kernel, bias])
    kernel, bias = last.get_weights()
    kernel[:] = 0.0
    kernel[2, 2, 0, 0] = 1.0
    last.set_weights([kernel, np.zeros_like(bias)])


def train_model(data: Splits, callbacks: list[keras.callbacks.Callback]) -> keras.Model:
    """Train a new SRCNN, started as bicubic, for one epoch over the training patches.

    Args:
        data: the task's splits; only the training split is used.
        callbacks: passed to ``fit`` (the cache's progress bar).

    Returns:
        The trained model, still compiled (the cache saves an uncompiled copy).
    """
    model = build_model()
    start_as_bicubic(model)
    steps = int(np.ceil(len(data.x_train) / BATCH))
    # Warm-up keeps Adam's first, sign-sized steps from wrecking the identity start.
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps - 100, alpha=0.05, warmup_target=PEAK_LR, warmup_steps=100
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    model.fit(data.x_train, data.y_train, batch_size=BATCH, epochs=1, verbose=0,
              callbacks=callbacks)  # fmt: skip
    return model


def load(metric: str | None = None) -> Task:
    """The sr task; trains and caches the model on first use.

    Args:
        metric: ``--metric``: a built-in regression metric or a user's
            ``FILE.py:FUNCTION``; None for PSNR.

    Returns:
        The task, shipped at input shape (1, 64, 64, 1), with the test split's bicubic
        PSNR in its ``info``.

    Raises:
        UsageError: ``metric`` is not a known metric, or the user's function it names
            cannot be loaded.
    """
    data = load_data()
    model = cached_model(
        NAME, f"srcnn-x3-{RECIPE}.keras", lambda cbs: train_model(data, cbs), seed=SEED
    )
    return Task(
        name=NAME,
        model=model,
        data=data,
        metric=metric_for(metric or "psnr", "regression"),
        input_shape=(1, CROP, CROP, 1),
        info={
            "scale": SCALE,
            "bicubic_psnr": psnr(data.y_test, data.x_test),
            "test_crops": len(data.x_test),
        },
        finetune_samples=FINETUNE_PATCHES,
    )

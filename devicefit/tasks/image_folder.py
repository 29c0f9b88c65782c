"""``--data DIR``: images in one sub-folder per class, read as Keras reads them.

Keras's ``image_dataset_from_directory`` conventions: the class names are the
sub-folders' names in sorted order (labels 0, 1, ...); files ending in .bmp, .gif,
.jpeg, .jpg or .png; each image decoded, converted to RGB (or grayscale for a model
with one input channel), resized bilinearly (``tf.image.resize``, no antialiasing) to
``--image-size H,W`` and given as float32 in [0, 255]. ``DIR`` either holds ``train/``,
``val/`` and optionally ``test/`` folders, each with the class sub-folders, or only
the class sub-folders:
then each class's files (sorted by name) are shuffled by a fixed seed and split
70/15/15.

The splits are :class:`LazyImages`: file names until images are asked for, a batch at
a time, so a folder larger than memory can be searched. Every problem is one
UsageError line naming ``--data`` and the folder or file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from devicefit.errors import UsageError
from devicefit.tasks.base import Splits
from devicefit.tasks.lazy_rows import LazyRows

EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
SPLIT_FOLDERS = ("train", "val", "test")
SHARES = (0.7, 0.15)  # train, validation; the rest is test


class LazyImages(LazyRows):
    """Images named by path, decoded only when their rows are read."""

    def __init__(
        self, paths: tuple[str, ...], size: tuple[int, int], channels: int, dtype: Any = "float32"
    ) -> None:
        self.paths = paths
        self.image_size = size
        self.channels = channels
        self.dtype = np.dtype(dtype)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (*self.image_size, self.channels)

    def read(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.zeros((0, *self.sample_shape), self.dtype)
        return np.stack([self._decode(self.paths[i]) for i in rows])

    def subset(self, rows: np.ndarray) -> LazyImages:
        paths = tuple(self.paths[i] for i in rows)
        return LazyImages(paths, self.image_size, self.channels, self.dtype)

    def _decode(self, path: str) -> np.ndarray:
        # The ops image_dataset_from_directory runs, so a model trained on Keras's loader
        # sees the same pixels here (PIL's own resize would antialias and differ).
        import tensorflow as tf

        raw = tf.io.read_file(path)
        if self.channels == 1 and path.lower().endswith((".bmp", ".gif")):
            # Their decoders give no grayscale (Keras's loader fails on them here).
            image = tf.image.rgb_to_grayscale(
                tf.image.decode_image(raw, channels=3, expand_animations=False)
            )
        else:
            image = tf.image.decode_image(raw, channels=self.channels, expand_animations=False)
        image = tf.image.resize(image, self.image_size, method="bilinear")
        return image.numpy().astype(self.dtype, copy=False)


def parse_image_size(text: Any) -> tuple[int, int]:
    """``"64,64"`` or ``[64, 64]`` as (height, width); a UsageError otherwise.

    Args:
        text: ``--image-size`` as given: a flag's text, or a list from the study file.

    Returns:
        The (height, width) in pixels, both at least 1.

    Raises:
        UsageError: ``text`` is not two positive integers.
    """
    size: tuple[int, ...] = ()
    if isinstance(text, str):
        try:
            size = tuple(int(p) for p in text.split(","))
        except ValueError:
            size = ()
    elif isinstance(text, list | tuple) and all(
        isinstance(p, int) and not isinstance(p, bool) for p in text
    ):
        size = tuple(text)
    if len(size) != 2 or min(size) < 1:
        raise UsageError(f"--image-size: give HEIGHT,WIDTH in pixels, e.g. 64,64; got {text!r}")
    return size


def read_image_folder(path_text: str, size: tuple[int, int], channels: int) -> Splits:
    """The folder's train, validation and test splits (see the module docstring).

    Args:
        path_text: the ``--data`` folder.
        size: the (height, width) every image is resized to.
        channels: the model's input channels: 1 (grayscale) or 3 (RGB).

    Returns:
        Per split a :class:`LazyImages` (nothing decoded yet) and int64 labels, the
        index of each image's class folder in sorted order.

    Raises:
        UsageError: fewer than two class folders, a class folder missing from a split or
            holding no images, a file that is not an image, a class too small to split,
            or a split left without images.
    """
    root = Path(path_text)
    if all((root / split).is_dir() for split in SPLIT_FOLDERS[:2]):
        classes = _class_names(root / "train")
        found = {
            split: _files(root / split, classes)
            for split in SPLIT_FOLDERS
            if (root / split).is_dir()
        }
        if "test" not in found:  # as with an .npz without a test split: halve validation
            found["val"], found["test"] = _halves(found["val"])
    else:
        classes = _class_names(root)
        found = _split(_files(root, classes))
    for split, files in found.items():
        if not files:
            raise UsageError(f"--data: {root} has no images for the {split} split")
    splits: list[Any] = []  # per split a LazyImages (standing in for an array), its labels
    for split in SPLIT_FOLDERS:
        paths = tuple(p for p, _ in found[split])
        labels = np.array([label for _, label in found[split]], np.int64)
        splits += [LazyImages(paths, size, channels), labels]
    return Splits(*splits)


def _class_names(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < 2:
        raise UsageError(
            f"--data: {folder} needs one sub-folder per class (at least two), found {len(names)}"
        )
    return names


def _files(folder: Path, classes: list[str]) -> list[tuple[str, int]]:
    """(path, label) of every image under each class folder, sorted; each file's header
    read, so a file that is not an image is named now, not in the middle of a search."""
    from PIL import Image, UnidentifiedImageError

    found = []
    for label, name in enumerate(classes):
        directory = folder / name
        if not directory.is_dir():
            raise UsageError(f"--data: {folder} has no folder for class {name!r}")
        files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in EXTENSIONS)
        if not files:
            raise UsageError(f"--data: class folder {directory} holds no images")
        for file in files:
            try:
                with Image.open(file) as image:
                    image.verify()
            except (OSError, UnidentifiedImageError, SyntaxError) as exc:
                raise UsageError(f"--data: cannot read {file} as an image: {exc}") from None
            found.append((str(file), label))
    return found


def _split(files: list[tuple[str, int]]) -> dict[str, list[tuple[str, int]]]:
    """70/15/15 of each class's files, shuffled by a fixed seed (stable across runs)."""
    out: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLIT_FOLDERS}
    for label in sorted({label for _, label in files}):
        mine = [f for f in files if f[1] == label]
        if len(mine) < 3:
            raise UsageError(
                f"--data: class folder {Path(mine[0][0]).parent} has {len(mine)} image(s); "
                "at least 3 are needed to split it into train, validation and test"
            )
        order = np.random.default_rng(label).permutation(len(mine))
        # At least one image for validation and one for test, however small the class.
        train = min(len(mine) - 2, max(1, int(round(SHARES[0] * len(mine)))))
        val = max(1, min(len(mine) - train - 1, int(round(SHARES[1] * len(mine)))))
        out["train"] += [mine[i] for i in sorted(order[:train])]
        out["val"] += [mine[i] for i in sorted(order[train : train + val])]
        out["test"] += [mine[i] for i in sorted(order[train + val :])]
    return out


def _halves(files: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    order = np.random.default_rng(0).permutation(len(files))
    half = len(files) // 2
    return [files[i] for i in sorted(order[:half])], [files[i] for i in sorted(order[half:])]

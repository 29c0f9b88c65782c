"""Folders of class sub-folders made from scikit-image's sample photos (they ship inside
the package): each class is crops of one photo, so a small CNN can tell them apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea")


def make_image_folder(root: Path, per_class: int, crop: int = 48, seed: int = 0) -> Path:
    """``root/<photo>/<n>.png``: ``per_class`` random ``crop``-pixel crops of each photo,
    at sizes that vary (so resizing is exercised), saved as PNG."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        photo = getattr(data, name)()
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            side = int(rng.integers(crop, 2 * crop))
            top = int(rng.integers(0, photo.shape[0] - side))
            left = int(rng.integers(0, photo.shape[1] - side))
            patch = photo[top : top + side, left : left + side]
            Image.fromarray(patch).save(root / name / f"{n:05d}.png")
    return root

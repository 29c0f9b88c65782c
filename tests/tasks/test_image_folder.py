"""``--data DIR``: a folder of class sub-folders, read lazily as Keras reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from image_folders import PHOTOS, make_image_folder

from devicefit.errors import UsageError
from devicefit.quiet import silence_tensorflow
from devicefit.tasks import TaskSpec
from devicefit.tasks.image_folder import LazyImages, parse_image_size, read_image_folder
from devicefit.tasks.user import load_user_task

silence_tensorflow()

import keras  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images") / "photos", per_class=10)


def test_classes_are_the_sorted_folders_split_70_15_15_by_class(folder: Path) -> None:
    splits = read_image_folder(str(folder), (32, 32), 3)
    assert [len(splits.x_train), len(splits.x_val), len(splits.x_test)] == [21, 6, 3]
    for y in (splits.y_train, splits.y_val, splits.y_test):
        assert sorted(set(y.tolist())) == [0, 1, 2]
    assert splits.x_train.shape == (21, 32, 32, 3)
    # Labels follow the sorted class names; each file sits in its class's folder.
    names = sorted(PHOTOS)
    for path, label in zip(splits.x_train.paths, splits.y_train, strict=True):
        assert Path(path).parent.name == names[label]
    seen = [p for x in (splits.x_train, splits.x_val, splits.x_test) for p in x.paths]
    assert len(seen) == len(set(seen)) == 30
    again = read_image_folder(str(folder), (32, 32), 3)
    assert again.x_test.paths == splits.x_test.paths  # the same split every run


def test_images_are_what_keras_image_dataset_from_directory_gives(folder: Path) -> None:
    splits = read_image_folder(str(folder), (40, 24), 3)
    keras_set = keras.utils.image_dataset_from_directory(
        folder, image_size=(40, 24), batch_size=None, shuffle=False, verbose=False
    )
    by_path = dict(zip(keras_set.file_paths, keras_set, strict=True))
    for index in (0, 5, 20):
        image, label = by_path[splits.x_train.paths[index]]
        np.testing.assert_allclose(splits.x_train[index], np.asarray(image), atol=1e-3)
        assert int(label) == splits.y_train[index]
    batch = splits.x_train[3:7]
    assert batch.shape == (4, 40, 24, 3) and batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 255.0 and batch.max() > 1.0


def test_indexing_by_indices_stays_lazy_and_slices_decode(folder: Path) -> None:
    images = read_image_folder(str(folder), (16, 16), 1).x_train
    subset = images[np.array([4, 1])]
    assert isinstance(subset, LazyImages) and subset.paths == (images.paths[4], images.paths[1])
    np.testing.assert_array_equal(subset[:], np.stack([images[4], images[1]]))
    assert subset[:].shape == (2, 16, 16, 1)  # grayscale for a one-channel model
    assert isinstance(images.astype("float32", copy=False), LazyImages)
    assert isinstance(images.astype("float32"), np.ndarray)
    mask = np.zeros(len(images), bool)
    mask[[2, 3]] = True
    assert images[mask].paths == images.paths[2:4]
    for bad in (np.zeros(3, bool), (0, slice(2)), np.array(3), [[1, 2]]):
        with pytest.raises(IndexError):
            images[bad]


@pytest.mark.parametrize("per_class", [3, 4, 5])
def test_small_classes_still_give_every_split_an_image(tmp_path: Path, per_class: int) -> None:
    splits = read_image_folder(str(make_image_folder(tmp_path / "d", per_class)), (8, 8), 3)
    assert len(splits.x_val) == len(splits.x_test) == 3  # one of each class
    assert len(splits.x_train) == 3 * (per_class - 2)


def test_bmp_and_gif_files_decode_for_a_one_channel_model(tmp_path: Path) -> None:
    from PIL import Image

    folder = make_image_folder(tmp_path / "d", 3)
    for name, suffix in (("astronaut", ".bmp"), ("coffee", ".gif")):
        for png in sorted((folder / name).glob("*.png")):
            Image.open(png).convert("RGB").save(png.with_suffix(suffix))
            png.unlink()
    splits = read_image_folder(str(folder), (8, 8), 1)
    images = splits.x_train[:]
    assert images.shape == (3, 8, 8, 1) and images.max() > 1.0


def test_train_val_test_folders_are_used_as_given(tmp_path: Path) -> None:
    for split, count in (("train", 4), ("val", 2), ("test", 1)):
        make_image_folder(tmp_path / "d" / split, per_class=count, seed=count)
    splits = read_image_folder(str(tmp_path / "d"), (8, 8), 3)
    assert [len(splits.x_train), len(splits.x_val), len(splits.x_test)] == [12, 6, 3]
    assert all("/test/" in p for p in splits.x_test.paths)


def test_a_model_searched_on_a_folder_gets_its_size_and_accuracy(
    folder: Path, tmp_path: Path
) -> None:
    model = keras.Sequential(
        [keras.Input((24, 24, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten()]
        + [keras.layers.Dense(3)]
    )
    model.save(tmp_path / "net.keras")
    task = load_user_task(TaskSpec(model_path=str(tmp_path / "net.keras"), data_path=str(folder)))
    assert task.input_shape == (1, 24, 24, 3) and task.metric.name == "accuracy"
    assert task.data.x_val[0:2].shape == (2, 24, 24, 3)  # the model's size by default
    assert task.calibration.shape == (21, 24, 24, 3)  # every training image: fewer than 128


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d / "only").mkdir(parents=True), "needs one sub-folder per class"),
        (lambda d: [(d / c).mkdir(parents=True) for c in "ab"], "holds no images"),
        (
            lambda d: [make_image_folder(d, 3), (d / "coffee" / "bad.png").write_text("x")],
            "cannot read",
        ),
        (lambda d: make_image_folder(d, 2), "at least 3 are needed"),
    ],
)
def test_a_bad_folder_is_one_line_naming_it(tmp_path: Path, make, message: str) -> None:  # noqa: ANN001
    make(tmp_path / "d")
    with pytest.raises(UsageError, match=message) as caught:
        read_image_folder(str(tmp_path / "d"), (8, 8), 3)
    assert str(caught.value).startswith("--data: ") and len(str(caught.value).splitlines()) == 1


def test_image_sizes_are_read_as_height_and_width() -> None:
    assert parse_image_size("64,48") == (64, 48) and parse_image_size([8, 8]) == (8, 8)
    for bad in ("64", "a,b", "0,4", [1, 2, 3], 64, True, [64.9, 3], [True, 2]):
        with pytest.raises(UsageError, match="--image-size"):
            parse_image_size(bad)

"""``--data FILE.py:FUNCTION``: the user's tf.data pipelines, read once to disk and then
a batch at a time by every process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_loaders import calls, write_loaders

from devicefit.errors import UsageError
from devicefit.quiet import silence_tensorflow
from devicefit.tasks import TaskSpec
from devicefit.tasks.data_loader import (
    is_data_loader,
    loader_folder,
    read_loader,
    splits_digest,
)
from devicefit.tasks.lazy_rows import DiskRows, is_lazy
from devicefit.tasks.user import load_user_task

silence_tensorflow()

import keras  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402


@pytest.fixture
def loaders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEVICEFIT_CACHE", str(tmp_path / "cache"))
    return write_loaders(tmp_path / "user")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.Flatten()]
        + [keras.layers.Dense(10)]
    )
    path = tmp_path_factory.mktemp("model") / "net.keras"
    model.save(path)
    return path


TEXT = {"capture_output": True, "text": True, "check": True}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return (d.images[..., None] / 16.0).astype(np.float32), d.target


def test_splits_are_the_datasets_rows_batched_or_not(loaders: Path) -> None:
    arrays, _ = read_loader(f"{loaders}:pipeline", 4, "float32")
    x, y = _digits()
    for split, rows in (("train", slice(0, 1200)), ("val", slice(1200, 1500))):
        assert arrays[f"x_{split}"].shape == x[rows].shape
        np.testing.assert_allclose(arrays[f"x_{split}"][:], x[rows], atol=1e-6)
        np.testing.assert_array_equal(arrays[f"y_{split}"], y[rows])
    assert len(arrays["x_test"]) == len(x) - 1500  # batches of 7, the last one short
    np.testing.assert_array_equal(arrays["y_test"], y[1500:])


def test_inputs_stay_on_disk_and_subsets_stay_lazy(loaders: Path) -> None:
    x_train = read_loader(f"{loaders}:pipeline", 4, "float32")[0]["x_train"]
    assert isinstance(x_train, DiskRows)
    assert Path(x_train.path).stat().st_size == 1200 * 8 * 8 * 4  # float32 rows, no header
    picked = [900, 3, 40, 41, 42, 3]  # out of order, a run, a repeat
    subset = x_train[np.array(picked)]
    assert is_lazy(subset) and len(subset) == 6
    expected = _digits()[0][picked]
    np.testing.assert_allclose(subset[:], expected, atol=1e-6)
    np.testing.assert_allclose(subset[-1], expected[-1], atol=1e-6)
    assert x_train.astype("float16", copy=False)[:2].dtype == np.float16  # cast as read
    np.testing.assert_allclose(subset[np.array([5, 0])][:], expected[[5, 0]], atol=1e-6)
    with pytest.raises(IndexError):
        subset[6]


def test_each_read_writes_a_folder_its_workers_read_without_the_loader(
    loaders: Path, classifier: Path
) -> None:
    spec = f"{loaders}:pipeline"
    first = read_loader(spec, 4, "float32")[1]
    arrays, second = read_loader(spec, 4, "float32")  # a study started again: read anew
    assert calls(loaders) == 2 and first != second and first.is_dir() and second.is_dir()
    assert splits_digest(first) == splits_digest(second)  # the same data, read twice
    other = read_loader(f"{loaders}:generated", 4, "float32")[1]
    assert splits_digest(other) != splits_digest(first)
    loaders.unlink()  # a worker needs neither the loader nor what it reads
    worker = load_user_task(TaskSpec(model_path=str(classifier), data_path=str(second)))
    np.testing.assert_array_equal(worker.data.y_train, arrays["y_train"])
    np.testing.assert_allclose(worker.data.x_val[:], arrays["x_val"][:])
    assert calls(loaders) == 3  # the two reads of pipeline and the one of generated


def test_a_removed_folder_is_still_read_by_those_that_opened_it(loaders: Path) -> None:
    arrays, folder = read_loader(f"{loaders}:pipeline", 4, "float32")
    subset = arrays["x_train"][np.array([5, 6])]
    shutil.rmtree(folder)
    np.testing.assert_allclose(subset[:], _digits()[0][[5, 6]], atol=1e-6)


def test_folders_of_drivers_that_are_gone_are_swept(loaders: Path) -> None:
    spec = f"{loaders}:generated"
    mine = read_loader(spec, 4, "float32")[1]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **TEXT)
    dead = mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{gone.stdout.strip()}-"))
    shutil.copytree(mine, dead)
    half = mine.with_name(f".writing-{dead.name}")
    half.mkdir()
    read_loader(spec, 4, "float32")
    assert mine.is_dir() and not dead.exists() and not half.exists()


def test_a_generator_of_unknown_length_and_a_tuple_of_splits(loaders: Path) -> None:
    arrays, _ = read_loader(f"{loaders}:generated", 4, "float32")
    assert [len(arrays[f"x_{s}"]) for s in ("train", "val", "test")] == [100, 50, 50]
    np.testing.assert_array_equal(arrays["y_val"], _digits()[1][100:150])


def test_a_user_task_from_a_loader_halves_validation_without_test(
    loaders: Path, classifier: Path
) -> None:
    task = load_user_task(TaskSpec(model_path=str(classifier), data_path=f"{loaders}:two_splits"))
    assert [len(task.data.x_train), len(task.data.x_val), len(task.data.x_test)] == [200, 50, 50]
    assert is_lazy(task.data.x_val) and is_lazy(task.data.x_test)
    assert task.metric.name == "accuracy"  # integer labels
    seen = np.concatenate([task.data.x_val[:], task.data.x_test[:]])
    expected = _digits()[0][200:300]
    assert sorted(map(bytes, seen)) == sorted(map(bytes, expected))


def test_labels_by_output_name_for_a_model_with_several_outputs(loaders: Path) -> None:
    arrays, _ = read_loader(f"{loaders}:two_heads", 4, "float32")
    y = _digits()[1]
    np.testing.assert_array_equal(arrays["y_train_cls"], y[:200])
    np.testing.assert_array_equal(arrays["y_val_even"][:, 0], y[200:250] % 2)
    assert len(arrays["x_test"]) == 50 and "y_train" not in arrays


BAD = {
    "missing file": ("{folder}/absent.py:make", "file not found"),
    "no such function": ("{loaders}:make", "has no function 'make'"),
    "raises": ("{loaders}:raises", "raises() raised FileNotFoundError: no such folder"),
    "not datasets": ("{loaders}:gives_a_number", "must return (train, val)"),
    "one split": ("{loaders}:gives_one_split", "got a tuple of 1"),
    "inputs alone": ("{loaders}:gives_inputs_alone", "must give (inputs, labels) pairs"),
    "two sizes": ("{loaders}:gives_two_sizes", "expected (4, 4, 1)"),
    "empty split": ("{loaders}:gives_an_empty_split", "the val dataset is empty"),
    "never ends": ("{loaders}:repeats", "the train dataset never ends"),
    "text labels": ("{loaders}:gives_names", "labels of dtype |S1 (text or objects)"),
    "fails midway": (
        "{loaders}:fails_midway",
        "failed: ValueError: corrupt record",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_loader_is_one_line_naming_it_and_leaves_no_files(
    case: str, loaders: Path, tmp_path: Path
) -> None:
    spec, needle = BAD[case]
    spec = spec.format(folder=tmp_path, loaders=loaders)
    with pytest.raises(UsageError) as error:
        read_loader(spec, 4, "float32")
    message = str(error.value)
    assert message.startswith(f"--data {spec}") and needle in message, message
    assert len(message.splitlines()) == 1
    assert not loader_folder(spec).is_dir() or not any(loader_folder(spec).iterdir())


def test_a_path_that_exists_is_data_not_a_loader(tmp_path: Path) -> None:
    odd = tmp_path / "a:b.npz"
    odd.write_bytes(b"")
    assert not is_data_loader(str(odd)) and is_data_loader("loaders.py:make")
    assert is_data_loader("mypackage.data:make") and not is_data_loader("data.npz")


def test_a_model_with_two_outputs_fine_tunes_from_a_loader(loaders: Path) -> None:
    # Targets by output name, streamed from the files a batch at a time.
    from devicefit.search.finetune import finetune

    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 1), name="image")
    features = keras.layers.Flatten()(keras.layers.Conv2D(8, 3, activation="relu")(image))
    cls = keras.layers.Dense(10, name="cls")(features)
    even = keras.layers.Dense(1, name="even")(features)
    model = keras.Model(image, [cls, even])
    path = loaders.parent / "heads.keras"
    model.save(path)
    spec = TaskSpec(model_path=str(path), data_path=f"{loaders}:two_heads", output="cls")
    task = load_user_task(spec)
    assert is_lazy(task.data.x_train) and set(task.data.y_train) == {"cls", "even"}
    student = keras.models.clone_model(task.model)
    student.set_weights(task.model.get_weights())
    log = finetune(student, task, epochs=2, callbacks=[], keep_best=False)
    assert log["epochs_run"] == 2
    pairs = zip(student.get_weights(), model.get_weights(), strict=True)
    assert any(not np.allclose(a, b) for a, b in pairs)


def _two_input_model(folder: Path) -> Path:
    """Inputs "image" and "hint" (an id the Embedding looks up), as the loader names them."""
    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 1), name="image")
    hint = keras.Input((1,), dtype="int32", name="hint")
    features = keras.layers.Flatten()(keras.layers.Conv2D(8, 3, activation="relu")(image))
    hinted = keras.layers.Flatten()(keras.layers.Embedding(5, 4)(hint))
    joined = keras.layers.Concatenate()([features, hinted])
    path = folder / "two_inputs.keras"
    keras.Model([image, hint], keras.layers.Dense(10)(joined)).save(path)
    return path


def test_inputs_by_name_for_a_model_with_several_inputs(loaders: Path) -> None:
    arrays, _ = read_loader(f"{loaders}:two_inputs", {"image": 4, "hint": 2}, "float32")
    x, y = _digits()
    assert isinstance(arrays["x_train_image"], DiskRows) and "x_train" not in arrays
    np.testing.assert_allclose(arrays["x_train_image"][:], x[:200], atol=1e-6)
    np.testing.assert_array_equal(arrays["x_val_hint"][:], (y[200:260] % 5)[:, None])
    assert arrays["x_val_hint"][:].dtype == np.int64  # the pipeline's dtype, not float32
    np.testing.assert_array_equal(arrays["y_test"], y[260:300])


def test_the_digest_of_several_inputs_does_not_depend_on_batching(loaders: Path) -> None:
    ranks = {"image": 4, "hint": 2}
    first = read_loader(f"{loaders}:two_inputs", ranks, "float32")[1]
    again = read_loader(f"{loaders}:two_inputs_rebatched", ranks, "float32")[1]
    assert splits_digest(first) == splits_digest(again)
    other = read_loader(f"{loaders}:two_heads", 4, "float32")[1]
    assert splits_digest(other) != splits_digest(first)


def test_a_model_with_two_inputs_fine_tunes_and_scores_from_a_loader(loaders: Path) -> None:
    from devicefit.evaluators.tflite_predict import predict
    from devicefit.search.finetune import finetune
    from devicefit.spaces.convert import to_tflite
    from devicefit.tasks.named_inputs import NamedInputs, feed

    path = _two_input_model(loaders.parent)
    task = load_user_task(TaskSpec(model_path=str(path), data_path=f"{loaders}:two_inputs"))
    x_train = task.data.x_train
    assert isinstance(x_train, NamedInputs) and is_lazy(x_train.arrays["image"])
    assert x_train[:2]["hint"].dtype == np.int32  # cast as the model's input takes it
    student = keras.models.clone_model(task.model)
    student.set_weights(task.model.get_weights())
    log = finetune(student, task, epochs=1, callbacks=[], keep_best=False)
    assert log["epochs_run"] == 1
    pairs = zip(student.get_weights(), task.model.get_weights(), strict=True)
    assert any(not np.allclose(a, b) for a, b in pairs)
    expected = np.asarray(student(feed(task.data.x_test), training=False))
    out = predict(to_tflite(student, task.input_shape), task.data.x_test)
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_a_loader_without_inputs_by_name_for_several_inputs_is_one_line(loaders: Path) -> None:
    spec = f"{loaders}:pipeline"
    with pytest.raises(UsageError) as error:
        read_loader(spec, {"image": 4, "hint": 2}, "float32")
    message = str(error.value)
    assert message.startswith(f"--data {spec}: the train dataset gives inputs as an array")
    assert "a dict of arrays by its input names image, hint" in message
    assert len(message.splitlines()) == 1

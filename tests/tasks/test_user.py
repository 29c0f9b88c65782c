"""User tasks: every supported model format round-trips; every bad input is one clear error."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from devicefit.errors import UsageError
from devicefit.quiet import silence_tensorflow
from devicefit.tasks import Task, TaskSpec
from devicefit.tasks.user import load_user_task

silence_tensorflow()

import keras  # noqa: E402

RNG = np.random.default_rng(0)


def tiny_classifier(shape: tuple = (8, 8, 1)) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )


def write_npz(
    path: Path, sizes: dict[str, int], shape: tuple = (8, 8, 1), labels: bool = True
) -> Path:
    arrays = {}
    for split, n in sizes.items():
        arrays[f"x_{split}"] = RNG.random((n, *shape), dtype=np.float32)
        if labels:
            arrays[f"y_{split}"] = RNG.integers(0, 3, n)
    np.savez(path, **arrays)
    return path


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    return write_npz(tmp_path / "data.npz", {"train": 20, "val": 10, "test": 10})


@pytest.fixture(scope="module")
def saved_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("savedmodel") / "net"
    with contextlib.redirect_stdout(io.StringIO()):  # export prints its endpoints
        tiny_classifier().export(str(folder))
    return folder


def user_task(model: Path, data: Path, metric: str | None = None) -> Task:
    return load_user_task(TaskSpec(model_path=str(model), data_path=str(data), metric=metric))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_files_round_trip(tmp_path: Path, data_file: Path, suffix: str) -> None:
    model = tiny_classifier()
    model.save(tmp_path / f"net{suffix}")
    task = user_task(tmp_path / f"net{suffix}", data_file)
    assert task.name == "net" and task.input_shape == (1, 8, 8, 1)
    assert task.metric.name == "accuracy"  # integer labels and no --metric
    x = task.data.x_test
    np.testing.assert_allclose(
        task.model.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5
    )


def test_saved_model_folder_round_trip(saved_model_dir: Path, data_file: Path) -> None:
    task = user_task(saved_model_dir, data_file, metric="top5")
    assert task.input_shape == (1, 8, 8, 1) and task.metric.name == "top5"
    x = task.data.x_test
    expected = tiny_classifier().predict(x, verbose=0)  # same seed, same weights
    np.testing.assert_allclose(task.model.predict(x, verbose=0), expected, atol=1e-5)
    assert "only quantization applies" in task.info["note"]  # one opaque layer
    assert str(saved_model_dir) in task.info["note"]


def test_a_saved_model_search_says_only_quantization_applies(
    saved_model_dir: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from devicefit.cli import main

    argv = ["search", "--model", str(saved_model_dir), "--data", str(data_file)]
    argv += ["--trials", "1", "--results", str(tmp_path / "out"), "--confirm-rounds", "0"]
    assert main(argv) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "TFSMLayer" in line]
    assert len(lines) == 1 and "only quantization applies" in lines[0]


def test_fidelity_labels_are_the_model_predictions(tmp_path: Path) -> None:
    model = tiny_classifier()
    model.save(tmp_path / "net.keras")
    data = write_npz(tmp_path / "d.npz", {"train": 12, "val": 9}, labels=False)
    task = user_task(tmp_path / "net.keras", data)  # no labels: fidelity by default
    assert task.metric.name == "fidelity"
    # no test split given: the validation set is halved, deterministically
    assert (len(task.data.x_val), len(task.data.x_test)) == (4, 5)
    for x, y in ((task.data.x_train, task.data.y_train), (task.data.x_test, task.data.y_test)):
        np.testing.assert_array_equal(y, model.predict(x, verbose=0).argmax(-1))
    again = user_task(tmp_path / "net.keras", data)
    np.testing.assert_array_equal(again.data.x_test, task.data.x_test)


def test_free_input_dims_take_the_data_shape(tmp_path: Path) -> None:
    tiny_classifier((None, None, 1)).save(tmp_path / "fcn.keras")
    data = write_npz(tmp_path / "d.npz", {"train": 4, "val": 4}, shape=(16, 12, 1))
    assert user_task(tmp_path / "fcn.keras", data).input_shape == (1, 16, 12, 1)


def two_input_model() -> keras.Model:
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    return keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))


def two_output_model() -> keras.Model:
    a = keras.Input((4,))
    return keras.Model(a, [keras.layers.Dense(2)(a), keras.layers.Dense(3)(a)])


def expect_error(match: str | None, model: Path, data: Path, metric: str | None = None) -> str:
    with pytest.raises(UsageError, match=match) as info:
        user_task(model, data, metric)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_and_corrupt_models(tmp_path: Path, data_file: Path) -> None:
    missing = tmp_path / "nope.keras"
    assert expect_error(None, missing, data_file) == f"--model: file not found: {missing}"
    corrupt = tmp_path / "bad.keras"
    corrupt.write_bytes(b"not a zip file at all")
    expect_error(rf"^--model: cannot load {corrupt} as a Keras model: .+", corrupt, data_file)
    (tmp_path / "bad.h5").write_bytes(b"\x00" * 64)
    expect_error("^--model: cannot load .*bad.h5 as a Keras model", tmp_path / "bad.h5", data_file)
    (tmp_path / "empty_dir").mkdir()
    expect_error(
        "^--model: cannot load .*empty_dir as a Keras model", tmp_path / "empty_dir", data_file
    )
    (tmp_path / "net.onnx").write_bytes(b"x")
    expect_error(
        "^--model: .*net.onnx is not a .keras or .h5 file", tmp_path / "net.onnx", data_file
    )


def test_a_model_with_several_inputs_wants_inputs_per_name(tmp_path: Path, data_file: Path) -> None:
    two_input_model().save(tmp_path / "multi.keras")
    expect_error(
        "^--data: .* lacks x_train_a \\(it has x_train; a model with several inputs takes "
        "one per input\\)$",
        tmp_path / "multi.keras",
        data_file,
    )
    rng = np.random.default_rng(0)
    arrays = {f"x_{s}_{n}": rng.random((6, 4)) for s in ("train", "val") for n in "ab"}
    arrays |= {f"y_{s}": rng.integers(0, 2, 6) for s in ("train", "val")}
    np.savez(tmp_path / "named.npz", **arrays)
    task = user_task(tmp_path / "multi.keras", tmp_path / "named.npz")
    np.testing.assert_array_equal(task.data.x_train[:]["b"], arrays["x_train_b"].astype("float32"))


def test_a_model_with_several_outputs_wants_labels_per_output(
    tmp_path: Path, data_file: Path
) -> None:
    # Several outputs are supported (tests/tasks/test_several_outputs.py); one y_train
    # for two outputs is named as the problem.
    two_output_model().save(tmp_path / "multi.keras")
    expect_error("^--data: .*data.npz lacks y_train_dense", tmp_path / "multi.keras", data_file)


def test_bad_data_files(tmp_path: Path, data_file: Path) -> None:
    tiny_classifier().save(tmp_path / "net.keras")
    net = tmp_path / "net.keras"
    expect_error(f"^--data: file not found: {tmp_path / 'none.npz'}$", net, tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    expect_error("^--data: cannot read .*junk.npz as an .npz file", net, tmp_path / "junk.npz")
    no_train = tmp_path / "no_train.npz"
    np.savez(no_train, x_val=np.zeros((4, 8, 8, 1)), y_val=np.zeros(4))
    expect_error(f"^--data: {no_train} lacks x_train$", net, no_train)
    no_labels = write_npz(tmp_path / "nolabels.npz", {"train": 4, "val": 4}, labels=False)
    expect_error("lacks y_train$", net, no_labels, metric="accuracy")
    wrong = write_npz(tmp_path / "wrong.npz", {"train": 4, "val": 4}, shape=(28, 28))
    message = expect_error(None, net, wrong)
    assert message == "--data: x_train samples have shape (28, 28) but the model expects (8, 8, 1)"
    mixed = dict(np.load(data_file))
    mixed["x_val"] = np.zeros((10, 9, 8, 1), np.float32)
    np.savez(tmp_path / "mixed.npz", **mixed)
    expect_error(
        r"^--data: x_val samples have shape \(9, 8, 1\) but the model expects \(8, 8, 1\)",
        net,
        tmp_path / "mixed.npz",
    )
    short = dict(np.load(data_file))
    short["y_train"] = short["y_train"][:5]
    np.savez(tmp_path / "short.npz", **short)
    expect_error("^--data: x_train has 20 samples but y_train has 5", net, tmp_path / "short.npz")


def test_unknown_metric_names_the_flag(tmp_path: Path, data_file: Path) -> None:
    tiny_classifier().save(tmp_path / "net.keras")
    expect_error("^--metric: unknown metric 'f1'", tmp_path / "net.keras", data_file, metric="f1")


def test_labels_must_fit_the_metric(tmp_path: Path, data_file: Path) -> None:
    tiny_classifier().save(tmp_path / "net.keras")
    net = tmp_path / "net.keras"
    message = expect_error("^--data: y_train samples have shape", net, data_file, metric="psnr")
    assert message.endswith("but the model outputs (3,); metric psnr compares them element-wise")
    arrays = dict(np.load(data_file))
    arrays["y_val"] = arrays["y_val"] + 3
    np.savez(tmp_path / "range.npz", **arrays)
    expect_error(
        r"^--data: y_val must hold class indices 0\.\.2 or one-hot", net, tmp_path / "range.npz"
    )


def test_a_studys_finetune_samples_bound_the_subset_its_trials_fine_tune_on(
    tmp_path: Path, data_file: Path
) -> None:
    from devicefit.config import StudyConfig
    from devicefit.search.finetune import training_subset
    from devicefit.search.run import task_spec
    from devicefit.tasks import clear_loaded_tasks, load_task

    tiny_classifier().save(tmp_path / "net.keras")
    files = {"model": str(tmp_path / "net.keras"), "data": str(data_file)}
    clear_loaded_tasks()
    try:
        bounded = load_task(task_spec(StudyConfig(**files, finetune_samples=7)))
        whole = load_task(task_spec(StudyConfig(**files)))
    finally:
        clear_loaded_tasks()
    subset = training_subset(bounded)
    assert len(subset) == 7 and len(set(subset)) == 7 and subset.max() < 20
    assert len(training_subset(whole)) == 20  # the default: every training sample

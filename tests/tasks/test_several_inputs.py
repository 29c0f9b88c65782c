"""Models with several inputs: the splits as :class:`NamedInputs` (rows that read as a dict
by input name), the ``.npz`` keys ``x_<split>_<input>``, TFLite files fed by signature
name, and calibration with every input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devicefit.errors import UsageError
from devicefit.evaluators.tflite_predict import predict
from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import ConvertContext
from devicefit.spaces.convert import to_tflite
from devicefit.spaces.quantization import Quantization
from devicefit.tasks.base import TaskSpec
from devicefit.tasks.lazy_rows import DiskRows, is_lazy
from devicefit.tasks.named_inputs import (
    NamedInputs,
    content_digest,
    feed,
    first_rows,
    rows_of_one,
)
from devicefit.tasks.user import load_user_task

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers


def two_input_model() -> keras.Model:
    """An image and an integer category (an Embedding's ids), so dtypes differ per input."""
    keras.utils.set_random_seed(0)
    image = keras.Input((6, 6, 2), name="image")
    kind = keras.Input((1,), dtype="int32", name="kind")
    x = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, activation="relu", name="conv")(image))
    k = L.Flatten()(L.Embedding(5, 4, name="embed")(kind))
    return keras.Model([image, kind], L.Dense(3, name="logits")(L.Concatenate()([x, k])))


def rows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random rows whose image's first pixel is the row's kind: rows stay aligned."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 5, (n, 1))
    image = rng.random((n, 6, 6, 2))  # float64: cast to float32 on load
    image[:, 0, 0, 0] = kind[:, 0]
    return {"image": image, "kind": kind}


def aligned(x: NamedInputs) -> bool:
    values = x[:]
    return bool(np.array_equal(values["image"][:, 0, 0, 0], values["kind"][:, 0]))


def test_rows_read_as_a_dict_and_subsets_stay_named() -> None:
    x = NamedInputs(rows(10))
    assert len(x) == 10 and x.names == ("image", "kind") and is_lazy(x)
    assert x.shapes == {"image": (6, 6, 2), "kind": (1,)}
    batch = x[2:5]
    assert sorted(batch) == ["image", "kind"] and batch["image"].shape == (3, 6, 6, 2)
    picked = x[np.array([7, 1])]
    assert isinstance(picked, NamedInputs) and len(picked) == 2
    np.testing.assert_array_equal(picked[:]["kind"], x.arrays["kind"][[7, 1]])
    np.testing.assert_array_equal(x[3]["image"], x.arrays["image"][3])
    assert isinstance(first_rows(x, 4), NamedInputs) and len(first_rows(x, 40)) == 10
    assert sorted(feed(first_rows(x, 4))) == ["image", "kind"]
    with pytest.raises(TypeError, match="image, kind are several arrays"):
        np.asarray(x)
    with pytest.raises(ValueError, match="different lengths"):
        NamedInputs({"a": np.zeros(3), "b": np.zeros(4)})


def test_casts_keep_integer_inputs_and_digests_see_every_input() -> None:
    x = NamedInputs(rows(6))
    cast = x.astype(np.float32)
    assert cast.arrays["image"].dtype == np.float32 and cast.arrays["kind"].dtype.kind == "i"
    typed = x.with_dtypes({"image": "float16", "kind": "int32"})
    assert typed[:]["image"].dtype == np.float16 and typed[:]["kind"].dtype == np.int32
    other = rows(6)
    other["kind"] = (other["kind"] + 1) % 5
    assert content_digest(x) != content_digest(NamedInputs(other))
    assert content_digest(x) == content_digest(NamedInputs(rows(6)))
    one = rows_of_one(x, 4)
    assert len(one) == 4 and one[2]["image"].shape == (1, 6, 6, 2)


def test_lazy_inputs_stay_lazy_inside(tmp_path: Path) -> None:
    images = rows(8)["image"].astype(np.float32)
    images.tofile(tmp_path / "x.bin")
    x = NamedInputs({"image": DiskRows(str(tmp_path / "x.bin"), "float32", (6, 6, 2), 8),
                     "kind": rows(8)["kind"]})  # fmt: skip
    subset = x[np.array([5, 0, 3])]
    assert is_lazy(subset.arrays["image"])  # nothing read yet
    np.testing.assert_array_equal(subset[:]["image"], images[[5, 0, 3]])


def test_the_file_is_fed_by_input_name_at_every_precision() -> None:
    model = two_input_model()
    x = NamedInputs(rows(40)).with_dtypes({"image": "float32", "kind": "int32"})
    expected = np.asarray(model(feed(x), training=False))
    f32 = to_tflite(model, (1, 6, 6, 2))
    np.testing.assert_allclose(predict(f32, x), expected, atol=1e-5)
    # int8: calibrated on both inputs (a representative dataset by signature name)
    context = ConvertContext((1, 6, 6, 2), x)
    int8 = Quantization().convert(model, {"mode": "int8"}, context)
    assert np.mean(predict(int8, x).argmax(-1) == expected.argmax(-1)) >= 0.9


def _npz(folder: Path, arrays: dict[str, np.ndarray]) -> str:
    path = folder / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def test_an_npz_with_one_array_per_input_loads_as_named_splits(tmp_path: Path) -> None:
    two_input_model().save(tmp_path / "net.keras")
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 30), ("val", 20)):  # no test split: validation is halved
        for name, values in rows(n, seed=n).items():
            arrays[f"x_{split}_{name}"] = values
        arrays[f"y_{split}"] = rng.integers(0, 3, n)
    spec = TaskSpec(model_path=str(tmp_path / "net.keras"), data_path=_npz(tmp_path, arrays))
    task = load_user_task(spec)
    data = task.data
    assert isinstance(data.x_train, NamedInputs) and len(data.x_val) + len(data.x_test) == 20
    assert data.x_train[:]["image"].dtype == np.float32  # cast as each input takes it
    assert data.x_train[:]["kind"].dtype == np.int32
    assert task.input_shape == (1, 6, 6, 2)  # the first input's
    calibration = task.calibration
    assert isinstance(calibration, NamedInputs) and len(calibration) == 30
    # Validation rows are halved alike for every input: the same rows of each.
    assert all(aligned(x) for x in (data.x_train, data.x_val, data.x_test))
    halves = np.concatenate([data.x_val[:]["kind"], data.x_test[:]["kind"]])
    assert sorted(halves.ravel().tolist()) == sorted(arrays["x_val_kind"].ravel().tolist())
    assert aligned(calibration) and aligned(data.x_train[np.array([29, 3, 17])])


def train_and_val(folder: Path) -> dict[str, np.ndarray]:
    """The two-input model saved in ``folder``; .npz arrays of 30 training and 20
    validation rows, labels all 0."""
    two_input_model().save(folder / "net.keras")
    arrays = {}
    for split, n in (("train", 30), ("val", 20)):
        for name, values in rows(n).items():
            arrays[f"x_{split}_{name}"] = values
        arrays[f"y_{split}"] = np.zeros(n, np.int64)
    return arrays


def test_inputs_of_different_lengths_are_refused(tmp_path: Path) -> None:
    arrays = train_and_val(tmp_path)
    arrays["x_val_kind"] = arrays["x_val_kind"][:15]
    spec = TaskSpec(model_path=str(tmp_path / "net.keras"), data_path=_npz(tmp_path, arrays))
    with pytest.raises(UsageError, match="x_val_image has 20, x_val_kind has 15"):
        load_user_task(spec)


def test_a_device_times_a_file_whose_input_holds_ids() -> None:
    # Random values would be ids out of the Embedding's range: the gather fails to run.
    from devicefit.deploy.bench import benchmark

    tflite = to_tflite(two_input_model(), (1, 6, 6, 2))
    quick = {"warmup": 1, "min_runs": 3, "min_seconds": 0.0, "max_seconds": 0.5, "placements": 1}
    result = benchmark(tflite, {**quick, "pin": False})
    assert result["median_ms"] > 0


def test_sensitivity_profile_scores_every_setting_of_a_two_input_model() -> None:
    from devicefit.evaluators.metrics import get_metric
    from devicefit.spaces import get_technique
    from devicefit.spaces.sensitivity import sensitivity_profile

    model = two_input_model()
    x = NamedInputs(rows(48)).with_dtypes({"image": "float32", "kind": "int32"})
    y = np.asarray(model(feed(x))).argmax(-1)  # the model's own labels: 100% before
    techniques = [get_technique(n) for n in ("channel_pruning", "lowrank", "magnitude_pruning")]
    context = ConvertContext((1, 6, 6, 2), x)
    points = sensitivity_profile(model, techniques, x, y, get_metric("accuracy"), context)
    assert {p.technique for p in points} == {t.name for t in techniques}
    assert all(p.error is None for p in points), [p.error for p in points if p.error]
    assert all(p.drop == 0.0 for p in points if p.level == "identity")
    assert any(p.drop > 0 for p in points if p.level == "strong")


def test_inspect_times_the_layers_of_a_two_input_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from devicefit.cli import main

    two_input_model().save(tmp_path / "net.keras")
    assert main(["inspect", "--model", str(tmp_path / "net.keras"), "--device", "local"]) == 0
    out = capsys.readouterr().out
    assert "conv" in out and "embed" in out
    shape = ["--input-shape", "1,6,6,2"]
    assert main(["inspect", "--model", str(tmp_path / "net.keras"), *shape]) == 2
    assert "has several inputs" in capsys.readouterr().err


def test_a_plain_x_test_for_a_model_with_several_inputs_is_named(tmp_path: Path) -> None:
    arrays = train_and_val(tmp_path)
    arrays["x_test"], arrays["y_test"] = arrays["x_val_image"], arrays["y_val"]
    spec = TaskSpec(model_path=str(tmp_path / "net.keras"), data_path=_npz(tmp_path, arrays))
    with pytest.raises(UsageError, match=r"lacks x_test_image \(it has x_test; a model with"):
        load_user_task(spec)


@pytest.mark.parametrize("keys", [("a", "b"), ("kind", "image")], ids=["other_keys", "unsorted"])
def test_a_model_built_on_a_dict_of_inputs_is_fed_by_input_name(
    tmp_path: Path, keys: tuple[str, str]
) -> None:
    """Keys that are not the inputs' names, or the names out of sorted order: the data and
    the TFLite file go by the inputs' names either way."""
    from devicefit.tasks.user import load_user_model

    image, kind = keras.Input((6, 6, 2), name="image"), keras.Input((1,), name="kind")
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, name="conv")(image))
    joined = L.Concatenate()([x, L.Dense(4, name="kind_dense")(kind)])
    inputs = {keys[0]: kind, keys[1]: image} if keys[0] == "kind" else {"a": image, "b": kind}
    keras.Model(inputs, L.Dense(3)(joined)).save(tmp_path / "net.keras")
    model = load_user_model(str(tmp_path / "net.keras"))
    x = NamedInputs(rows(12)).with_dtypes({"image": "float32", "kind": "float32"})
    expected = np.asarray(model(feed(x), training=False))
    np.testing.assert_allclose(predict(to_tflite(model, (1, 6, 6, 2)), x), expected, atol=1e-5)

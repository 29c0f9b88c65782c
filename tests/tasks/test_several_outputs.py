"""Models with several outputs: labels per output, a built-in metric on the output named,
a metric of one's own on all of them, TFLite files that keep the output names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from two_heads import two_heads, write_two_head_task

from devicefit.errors import UsageError
from devicefit.evaluators.tflite_predict import predict
from devicefit.spaces.convert import to_tflite
from devicefit.tasks import TaskSpec, load_task
from devicefit.tasks.user import load_user_task


@pytest.fixture(scope="module")
def task_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_two_head_task(tmp_path_factory.mktemp("heads"), sizes=(120, 40, 30))


def _spec(folder: Path, **changes: object) -> TaskSpec:
    return TaskSpec(
        model_path=str(folder / "net.keras"), data_path=str(folder / "data.npz"), **changes
    )


def test_the_file_keeps_the_models_output_names() -> None:
    model = two_heads()
    x = np.random.default_rng(0).normal(size=(40, 16, 16, 1)).astype(np.float32)
    out = predict(to_tflite(model, (1, 16, 16, 1)), x)
    expected = model(x)
    assert sorted(out) == ["box", "cls"]
    np.testing.assert_allclose(out["cls"], np.asarray(expected[0]), atol=1e-5)
    np.testing.assert_allclose(out["box"], np.asarray(expected[1]), atol=1e-5)


def test_labels_per_output_and_each_outputs_kind(task_files: Path) -> None:
    task = load_user_task(_spec(task_files, metric=f"{task_files}/score.py:detection_score"))
    assert task.output_kinds == {"cls": "classification", "box": "regression"}
    assert sorted(task.data.y_test) == ["box", "cls"] and len(task.data.y_test["box"]) == 30
    assert task.metric.name == "detection_score" and task.metric.default_max_drop == 3.0
    reference = task.metric(task.data.y_val, {"cls": np.eye(3)[task.data.y_val["cls"]],
                                              "box": task.data.y_val["box"]})  # fmt: skip
    assert reference == pytest.approx(100.0)  # perfect outputs: all right, no box error


def test_a_builtin_metric_scores_the_output_named(task_files: Path) -> None:
    task = load_task(_spec(task_files, metric="accuracy", output="cls"))
    y = task.data.y_test
    perfect = {"cls": np.eye(3)[y["cls"]], "box": np.zeros_like(y["box"])}
    assert task.metric(y, perfect) == 100.0
    wrong = {"cls": np.eye(3)[(y["cls"] + 1) % 3], "box": y["box"]}
    assert task.metric(y, wrong) == 0.0
    mse = load_task(_spec(task_files, metric="mse", output="box")).metric
    assert mse(y, {"cls": perfect["cls"], "box": y["box"] + 0.5}) == pytest.approx(0.25)


def test_without_a_validation_split_of_its_own_each_outputs_labels_are_halved_alike(
    tmp_path: Path, task_files: Path
) -> None:
    with np.load(task_files / "data.npz") as npz:
        arrays = {k: npz[k] for k in npz.files if "test" not in k}
    np.savez(tmp_path / "d.npz", **arrays)
    spec = TaskSpec(model_path=str(task_files / "net.keras"), data_path=str(tmp_path / "d.npz"),
                    metric="accuracy", output="cls")  # fmt: skip
    data = load_user_task(spec).data
    assert len(data.x_val) == len(data.y_val["box"]) == len(data.y_val["cls"]) == 20
    # The same samples in both heads' labels: a sample's class sets its square's size.
    sides = (data.x_test[..., 0] > 0.5).sum(axis=(1, 2))
    np.testing.assert_array_equal(np.round(np.sqrt(sides)) - 2, data.y_test["cls"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metric": "accuracy"}, "--output: .*net.keras has outputs cls, box; name one"),
        ({"metric": "accuracy", "output": "mask"}, "'mask' is not one of them"),
        ({"metric": "fidelity", "output": "cls"}, "--metric fidelity"),
    ],
)
def test_several_outputs_need_a_metric_that_knows_which(
    task_files: Path, changes: dict, message: str
) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        load_user_task(_spec(task_files, **changes))
    assert len(str(caught.value).splitlines()) == 1

"""A user's own metric (``--metric file.py:function`` or ``module:function``): how it is
loaded and read, what a bad one says, and a trial whose metric fails on the TFLite file."""

from __future__ import annotations

import pickle
from pathlib import Path

import keras
import numpy as np
import pytest

from devicefit.config import StudyConfig
from devicefit.errors import UsageError
from devicefit.evaluators.custom_metric import MetricError, load_custom_metric, metric_for

METRICS_FILE = """
import numpy as np

def mean_abs(y_true, y_pred):
    return np.mean(np.abs(np.asarray(y_pred) - np.asarray(y_true)))
mean_abs.higher_is_better = False
mean_abs.unit = "px"
mean_abs.max_drop = 0.5

def plain(y_true, y_pred):
    return np.float32(len(y_true))

def zero_d(y_true, y_pred):
    return np.array([2.5])

def boom(y_true, y_pred):
    raise ValueError("the boxes do not line up")

def nan(y_true, y_pred):
    return float("nan")

def text(y_true, y_pred):
    return "good"

def odd_split(y_true, y_pred):
    # Fails on 7 samples only: the test split below, not the validation split.
    if len(y_true) == 7:
        raise KeyError("no box head in this output")
    return 1.0

def bad_direction(y_true, y_pred):
    return 1.0
bad_direction.higher_is_better = "yes"

def bad_budget(y_true, y_pred):
    return 1.0
bad_budget.max_drop = -1
"""


@pytest.fixture()
def metrics_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_metrics.py"
    path.write_text(METRICS_FILE)
    return path


def test_the_functions_attributes_give_direction_unit_and_budget(metrics_file: Path) -> None:
    metric = load_custom_metric(f"{metrics_file}:mean_abs", "regression")
    assert (metric.name, metric.higher_is_better, metric.unit) == ("mean_abs", False, "px")
    assert metric.default_max_drop == 0.5 and metric.kind == "regression"
    assert metric(np.zeros(4), np.full(4, 2.0)) == 2.0
    # Lower is better: a larger value is a drop.
    assert metric.drop(1.0, 1.5) == pytest.approx(0.5)
    plain = load_custom_metric(f"{metrics_file}:plain", "classification")
    assert plain.higher_is_better and plain.unit == "" and plain.default_max_drop is None
    assert plain(np.zeros(3), np.zeros(3)) == 3.0 and isinstance(plain(np.zeros(3), 0), float)
    assert load_custom_metric(f"{metrics_file}:zero_d", "regression")(0, 0) == 2.5


def test_a_module_function_is_imported_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "team_metrics.py").write_text(METRICS_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    metric = metric_for("team_metrics:mean_abs", "regression")
    assert metric.source == "team_metrics:mean_abs" and not metric.higher_is_better
    assert metric_for("accuracy", "classification").source is None


def test_a_metric_travels_to_another_process_as_its_source(metrics_file: Path) -> None:
    metric = load_custom_metric(f"{metrics_file}:mean_abs", "regression")
    again = pickle.loads(pickle.dumps(metric))
    assert (again.name, again.source, again.kind) == (metric.name, metric.source, "regression")
    assert again(np.zeros(2), np.ones(2)) == 1.0
    builtin = pickle.loads(pickle.dumps(metric_for("psnr", "regression")))
    assert builtin.name == "psnr" and builtin.source is None


def test_a_relative_metric_file_is_stored_absolute(
    metrics_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(metrics_file.parent)
    config = StudyConfig.from_dict({"task": "digits", "metric": "my_metrics.py:plain"})
    assert config.metric == f"{metrics_file}:plain"
    assert StudyConfig.from_dict({"task": "digits", "metric": "psnr"}).metric == "psnr"
    module = StudyConfig.from_dict({"task": "digits", "metric": "pkg.metrics:f1"})
    assert module.metric == "pkg.metrics:f1"


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("boom", "raised ValueError: the boxes do not line up at my_metrics.py:"),
        ("nan", "returned nan, not a finite number"),
        ("text", "returned 'good' (str), not a number"),
    ],
)
def test_a_failing_call_is_one_line_naming_the_function(
    metrics_file: Path, function: str, message: str
) -> None:
    metric = load_custom_metric(f"{metrics_file}:{function}", "classification")
    with pytest.raises(MetricError) as caught:
        metric(np.zeros(3), np.zeros((3, 2)))
    assert str(caught.value).startswith(f"{metrics_file}:{function} {message}")
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{file}:nothing", "has no function 'nothing'"),
        ("{dir}/absent.py:f", "file not found"),
        ("{file}:bad_direction", "higher_is_better must be True or False"),
        ("{file}:bad_budget", "max_drop must be a finite number >= 0"),
        ("no_such_module_here:f", "cannot import module no_such_module_here"),
        ("{file}:", "give FILE.py:FUNCTION or MODULE:FUNCTION"),
    ],
)
def test_a_bad_metric_is_refused_when_loaded(metrics_file: Path, spec: str, message: str) -> None:
    name = spec.format(file=metrics_file, dir=metrics_file.parent)
    with pytest.raises(UsageError) as caught:
        load_custom_metric(name, "classification")
    assert str(caught.value).startswith(f"--metric {name}: ") and message in str(caught.value)


def test_a_file_that_fails_to_import_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy as np\nraise ImportError('needs pycocotools')\n")
    with pytest.raises(UsageError, match=r"cannot import .*broken.py: ImportError: needs pyc"):
        load_custom_metric(f"{broken}:f", "classification")


def _user_task(tmp_path: Path) -> tuple[Path, Path]:
    """A small classifier and data with 10 validation and 7 test samples."""
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.Flatten()]
        + [keras.layers.Dense(3)]
    )
    model.save(tmp_path / "net.keras")
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 30), ("val", 10), ("test", 7)):
        arrays[f"x_{split}"] = rng.random((n, 8, 8, 1), dtype=np.float32)
        arrays[f"y_{split}"] = rng.integers(0, 3, n)
    np.savez(tmp_path / "data.npz", **arrays)
    return tmp_path / "net.keras", tmp_path / "data.npz"


def test_a_metric_failing_on_a_candidate_fails_that_trial_with_its_line(
    tmp_path: Path, metrics_file: Path
) -> None:
    from devicefit.search.trial import TrialRequest, run_trial
    from devicefit.tasks import load_task
    from devicefit.tasks.base import TaskSpec

    model, data = _user_task(tmp_path)
    spec = TaskSpec(None, str(model), str(data), f"{metrics_file}:odd_split")
    assert load_task(spec).metric.name == "odd_split"  # passes on the validation split
    plan = {"steps": [{"technique": "quantization", "params": {"mode": "float32"}}]}
    out = run_trial(TrialRequest(0, plan, spec, seed=0, threads=1, keep_keras=False))
    assert out.error is not None
    assert out.error.startswith(
        f"{metrics_file}:odd_split raised KeyError: 'no box head in this output' at my_metrics.py:"
    ), out.error


def test_a_metric_failing_on_the_original_model_stops_the_study(
    tmp_path: Path, metrics_file: Path
) -> None:
    from devicefit.tasks import load_task
    from devicefit.tasks.base import TaskSpec

    model, data = _user_task(tmp_path)
    with pytest.raises(UsageError) as caught:
        load_task(TaskSpec(None, str(model), str(data), f"{metrics_file}:boom"))
    line = METRICS_FILE.splitlines().index('    raise ValueError("the boxes do not line up")') + 1
    assert str(caught.value) == (
        f"--metric: {metrics_file}:boom raised ValueError: the boxes do not line up at "
        f"my_metrics.py:{line} (on the original model's validation outputs)"
    )


def test_a_metric_unpickles_in_another_process_from_another_folder(
    metrics_file: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    metric = load_custom_metric(f"{metrics_file}:mean_abs", "regression")
    code = (
        "import pickle, sys, numpy as np; m = pickle.loads(sys.stdin.buffer.read()); "
        "print(m.name, m.higher_is_better, m(np.zeros(3), np.full(3, 4.0)))"
    )
    (tmp_path / "elsewhere").mkdir()
    run = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(metric),
        capture_output=True,
        cwd=tmp_path / "elsewhere",
        timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert run.stdout.decode().split() == ["mean_abs", "False", "4.0"]

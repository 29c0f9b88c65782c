"""Every bad input: one clear line naming it, exit code 2, and no study folder left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from devicefit.cli import main


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("user")
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    model.save(folder / "net.keras")
    rng = np.random.default_rng(0)

    def split(n: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        return rng.random((n, *shape), dtype=np.float32), rng.integers(0, 3, n)

    good = {}
    for name, n in (("train", 30), ("val", 10)):
        good[f"x_{name}"], good[f"y_{name}"] = split(n, (8, 8, 1))
    np.savez(folder / "good.npz", **good)
    bad = dict(good)
    bad["x_train"] = rng.random((30, 9, 9, 1), dtype=np.float32)
    np.savez(folder / "wrong_shape.npz", **bad)
    (folder / "corrupt.keras").write_bytes(b"this is not a zip archive")
    _two_input_files(folder, good, rng)
    (folder / "scores.py").write_text(
        "def raises(y_true, y_pred):\n    raise ValueError('wrong head')\n"
        "def gives_nan(y_true, y_pred):\n    return float('nan')\n"
        "def gives_text(y_true, y_pred):\n    return 'fine'\n"
        "def no_budget(y_true, y_pred):\n    return 1.0\n"
    )
    (folder / "bad_range.toml").write_text(
        'task = "digits"\n[ranges.lowrank]\nrank_ratio = [0.9, 0.1]\n'
    )
    return {
        "model": folder / "net.keras",
        "good": folder / "good.npz",
        "wrong_shape": folder / "wrong_shape.npz",
        "corrupt": folder / "corrupt.keras",
        "bad_range": folder / "bad_range.toml",
        "scores": folder / "scores.py",
        "two_in": folder / "two_in.keras",
        "two_in_open": folder / "two_in_open.keras",
        "two_in_wrong": folder / "two_in_wrong.npz",
    }


def _two_input_files(folder: Path, good: dict, rng: np.random.Generator) -> None:
    """A model with inputs "image" and "side", one whose image size is left open, and
    data whose "side" inputs have the wrong shape."""
    for name, size in (("two_in", 8), ("two_in_open", None)):
        image, side = keras.Input((size, size, 1), name="image"), keras.Input((3,), name="side")
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(image))
        joined = keras.layers.Concatenate()([x, keras.layers.Dense(4)(side)])
        keras.Model([image, side], keras.layers.Dense(3)(joined)).save(folder / f"{name}.keras")
    wrong = {}
    for split in ("train", "val"):
        wrong[f"x_{split}_image"], wrong[f"y_{split}"] = good[f"x_{split}"], good[f"y_{split}"]
        wrong[f"x_{split}_side"] = rng.random((len(good[f"x_{split}"]), 4), dtype=np.float32)
    np.savez(folder / "two_in_wrong.npz", **wrong)


CASES = {
    "missing model": (["--model", "{folder}/nope.keras", "--data", "{good}"], "--model"),
    "corrupt model": (["--model", "{corrupt}", "--data", "{good}"], "--model"),
    "wrong data shape": (["--model", "{model}", "--data", "{wrong_shape}"], "(9, 9, 1)"),
    "several inputs, one x": (["--model", "{two_in}", "--data", "{good}"], "x_train_image"),
    "several inputs, open sizes": (["--model", "{two_in_open}", "--data", "{good}"], "fixed"),
    "several inputs, wrong shape": (
        ["--model", "{two_in}", "--data", "{two_in_wrong}"],
        "x_train_side samples have shape (4,)",
    ),
    "unknown technique": (["--task", "digits", "--techniques", "lowrank,magic"], "magic"),
    "unknown metric": (["--model", "{model}", "--data", "{good}", "--metric", "f1"], "--metric"),
    "unknown sampler": (["--task", "digits", "--sampler", "cmaes"], "--sampler"),
    "auto sampler": (["--task", "digits", "--sampler", "auto"], "OptunaHub's AutoSampler"),
    "invalid range": (["--config", "{bad_range}"], "ranges.lowrank.rank_ratio"),
    "unknown task": (["--task", "imagenet"], "--task"),
    "unknown device": (["--task", "digits", "--device", "pi=ftp://x"], "--device"),
    "device without port": (["--task", "digits", "--device", "http://pi.local"], "HOST:PORT"),
    "device given twice": (["--task", "digits", "--device", "local", "--device", "local"], "twice"),
    "unknown objective": (["--task", "digits", "--objective", "joy"], "--objective"),
    "negative paired rounds": (["--task", "digits", "--paired-rounds", "-1"], "--paired-rounds"),
    "no fine-tuning samples": (["--task", "digits", "--finetune-samples", "0"], "samples"),
    "bad memory size": (["--task", "digits", "--max-peak-memory", "lots"], "64MB"),
    "negative energy": (["--task", "digits", "--max-energy", "-1"], "--max-energy"),
    # This machine has no RAPL, battery or thermal zone: energy cannot be an objective.
    "sensor the device lacks": (["--task", "digits", "--objective", "energy"], "energy"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_and_writes_nothing(
    case: str, user_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, needle = CASES[case]
    fmt = {k: str(v) for k, v in user_files.items()} | {"folder": str(tmp_path)}
    argv = ["search", *(a.format(**fmt) for a in args), "--results", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("devicefit: error:") and needle in err
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


METRIC_CASES = {
    "missing file": ("{folder}/absent.py:f1", "file not found"),
    "no such function": ("{scores}:f1", "has no function 'f1'"),
    "raises": ("{scores}:raises", "raised ValueError: wrong head"),
    "returns NaN": ("{scores}:gives_nan", "returned nan, not a finite number"),
    "returns a string": ("{scores}:gives_text", "returned 'fine' (str), not a number"),
    "no budget": ("{scores}:no_budget", "no max_drop attribute"),
}


@pytest.mark.parametrize("case", sorted(METRIC_CASES))
def test_a_bad_metric_file_exits_2_naming_file_and_function(
    case: str, user_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, needle = METRIC_CASES[case]
    spec = spec.format(folder=tmp_path, scores=user_files["scores"])
    model, data = str(user_files["model"]), str(user_files["good"])
    argv = ["search", "--model", model, "--data", data, "--metric", spec]
    assert main([*argv, "--results", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("devicefit: error: --metric") and needle in err
    assert spec in err  # the file and the function, as given
    assert not (tmp_path / "out").exists()


def test_real_process_exit_code(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "devicefit",
            "search",
            "--task",
            "digits",
            "--sampler",
            "x",
            "--results",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "--sampler: unknown sampler 'x'" in done.stderr


ENV_TECHNIQUE_CASES = {
    "not JSON": ("not json", "$DEVICEFIT_TECHNIQUES: not JSON"),
    "no such module": ('{"oops": "nowhere_at_all:Oops"}', "cannot import 'nowhere_at_all'"),
    "no such class": ('{"oops": "devicefit.spaces:Oops"}', "has no 'Oops'"),
}


@pytest.mark.parametrize("case", sorted(ENV_TECHNIQUE_CASES))
def test_a_bad_registered_technique_exits_2_naming_it(case: str, tmp_path: Path) -> None:
    """Techniques registered through the environment (as a search's workers inherit them)
    are input too: a bad entry is one line, exit code 2, no study folder."""
    value, needle = ENV_TECHNIQUE_CASES[case]
    done = subprocess.run(
        [sys.executable, "-m", "devicefit", "search", "--task", "digits"]
        + ["--techniques", "oops", "--results", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "DEVICEFIT_TECHNIQUES": value},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("devicefit: error:"), err
    assert needle in err
    assert not (tmp_path / "out").exists()


def test_benchmark_rejects_non_tflite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.tflite").write_bytes(b"not a flatbuffer at all")
    assert main(["benchmark", str(tmp_path / "x.tflite")]) == 2
    assert "not a TFLite flatbuffer" in capsys.readouterr().err


def test_resume_of_a_non_study_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resume", str(tmp_path)]) == 2
    assert "not a devicefit results folder" in capsys.readouterr().err


LOADER_CASES = {
    "missing file": ("{folder}/absent.py:pipeline", "file not found"),
    "no such function": ("{loaders}:make", "has no function 'make'"),
    "raises": ("{loaders}:raises", "raised FileNotFoundError: no such folder: /data/train"),
    "not datasets": ("{loaders}:gives_a_number", "tf.data.Datasets"),
}


@pytest.mark.parametrize("case", sorted(LOADER_CASES))
def test_a_bad_data_loader_exits_2_naming_file_and_function(
    case: str,
    user_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from data_loaders import write_loaders

    monkeypatch.setenv("DEVICEFIT_CACHE", str(tmp_path / "cache"))
    spec, needle = LOADER_CASES[case]
    spec = spec.format(folder=tmp_path, loaders=write_loaders(tmp_path / "user"))
    argv = ["search", "--model", str(user_files["model"]), "--data", spec]
    assert main([*argv, "--results", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"devicefit: error: --data {spec}") and needle in err
    assert not (tmp_path / "out").exists()

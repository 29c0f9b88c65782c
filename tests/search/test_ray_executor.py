"""Trials as Ray tasks on a real two-node cluster started on loopback (``ray_cluster``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from studies import FAST_DIGITS

from devicefit.search import attrs
from devicefit.search.ray_executor import task_bundle, unpack
from devicefit.tasks.base import TaskSpec

# Shares the session's Ray cluster: kept on one test worker.
pytestmark = pytest.mark.xdist_group("ray")


def test_user_task_files_travel_in_the_bundle(tmp_path: Path) -> None:
    (tmp_path / "net.keras").write_bytes(b"model bytes")
    (tmp_path / "data.npz").write_bytes(b"data bytes")
    spec = TaskSpec(None, str(tmp_path / "net.keras"), str(tmp_path / "data.npz"), "accuracy")
    bundle, relative = task_bundle(spec)
    assert set(bundle.values()) == {b"model bytes", b"data bytes"}
    local = unpack(bundle, relative)
    assert Path(local.model_path).read_bytes() == b"model bytes"
    assert Path(local.data_path).read_bytes() == b"data bytes"
    assert local.metric == "accuracy" and Path(local.model_path).parent != tmp_path


@pytest.mark.slow
def test_digits_study_runs_on_both_nodes(tmp_path: Path, ray_cluster: Any) -> None:
    import ray

    address, _ = ray_cluster
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    config = tmp_path / "study.toml"
    config.write_text(FAST_DIGITS)
    run = subprocess.run(
        [sys.executable, "-m", "devicefit", "search", "--config", str(config)]
        + ["--trials", "5", "--workers", "2", "--study", "ray", "--results", str(tmp_path)]
        + ["--ray", address],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    folder = tmp_path / "ray"
    study = optuna.load_study(study_name="ray", storage=f"sqlite:///{folder / 'study.db'}")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 5
    built_on = {t.user_attrs[attrs.METRICS]["built_on"] for t in complete}
    assert built_on == nodes  # two trials at a time, one CPU per node: both nodes worked
    for trial in complete:  # the driver wrote every artifact
        assert (folder / attrs.TRIALS_DIR / str(trial.number) / "model.tflite").exists()


def test_a_data_loader_travels_as_the_splits_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node needs neither the loader file nor what it reads: the driver's files travel.
    import keras
    import numpy as np
    from data_loaders import calls, write_loaders

    from devicefit.tasks.data_loader import written_by_this_process
    from devicefit.tasks.user import load_user_task

    monkeypatch.setenv("DEVICEFIT_CACHE", str(tmp_path / "cache"))
    loaders = write_loaders(tmp_path / "user")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten()])
    model.add(keras.layers.Dense(10))
    model.save(tmp_path / "net.keras")
    spec = TaskSpec(None, str(tmp_path / "net.keras"), f"{loaders}:generated", "accuracy")
    on_driver = load_user_task(spec)
    # What run._prepare hands the workers: the folder the driver's read wrote.
    written = replace(spec, data_path=str(written_by_this_process(f"{loaders}:generated")))
    bundle, relative = task_bundle(written)
    shutil.rmtree(written.data_path)
    loaders.unlink()
    monkeypatch.setenv("DEVICEFIT_CACHE", str(tmp_path / "node-cache"))
    on_node = load_user_task(unpack(bundle, relative))
    assert calls(loaders) == 1
    for split in ("train", "val", "test"):
        x_node, x_driver = (
            getattr(on_node.data, f"x_{split}"),
            getattr(on_driver.data, f"x_{split}"),
        )
        np.testing.assert_array_equal(x_node[:], x_driver[:])
        np.testing.assert_array_equal(
            getattr(on_node.data, f"y_{split}"), getattr(on_driver.data, f"y_{split}")
        )
    assert len(on_node.data.x_train) == 100

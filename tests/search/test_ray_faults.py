"""Faults on a real Ray cluster on loopback: the driver killed mid-trial and resumed
with --ray (SQLite, PostgreSQL from the ``postgres_url`` fixture, Optuna's journal file), and a
worker node killed mid-trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from devicefit.search import attrs
from devicefit.search.storages import open_storage

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

# The cheapest real trials: quantization modes only, no fine-tuning.
STUDY = """
task = "digits"
seed = 0
min_runs = 10
min_seconds = 0.1
max_seconds = 0.6
confirm_rounds = 6  # paired rounds at the end: enough for an interval
paired_rounds = 4  # with the reference file, per candidate: one process
techniques = ["quantization"]
[ranges.finetune]
epochs = [0, 0]
"""


def _search(tmp_path: Path, name: str, trials: int, *flags: str) -> subprocess.Popen:
    config = tmp_path / "study.toml"
    config.write_text(STUDY)
    return subprocess.Popen(
        [sys.executable, "-m", "devicefit", "search", "--config", str(config), "--study", name]
        + ["--results", str(tmp_path), "--trials", str(trials), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _storage_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str | None:
    if kind == "postgresql":  # only this case starts (or reuses) the session's server
        return request.getfixturevalue("postgres_url")
    return {"sqlite": None, "journal": f"journal:{tmp_path}/j.log"}[kind]


def _load(folder: Path, url: str | None) -> optuna.Study:
    url = url or f"sqlite:///{folder / attrs.DB_FILE}"
    return optuna.load_study(study_name=folder.name, storage=open_storage(url))


@pytest.mark.parametrize("storage", ["sqlite", "postgresql", "journal"])
def test_kill_driver_mid_trial_then_resume_on_ray(
    tmp_path: Path, ray_cluster: Any, storage: str, request: pytest.FixtureRequest
) -> None:
    address = ray_cluster[0]
    url = _storage_url(storage, tmp_path, request)
    name = f"killed-{storage}-{os.getpid()}-{int(time.time())}"
    folder = tmp_path / name
    flags = ["--ray", address] + (["--storage", url] if url else [])
    driver = _search(tmp_path, name, 5, *flags)
    before: dict[int, tuple] = {}
    try:
        deadline = time.time() + 600
        while time.time() < deadline and driver.poll() is None:
            time.sleep(0.5)
            if not (folder / attrs.STUDY_FILE).exists():
                continue
            trials = _load(folder, url).get_trials()
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if len(complete) >= 2 and running and running[0].user_attrs.get(attrs.PLAN):
                os.kill(driver.pid, signal.SIGKILL)
                driver.wait()
                before = {t.number: (t.values, t.user_attrs[attrs.PLAN]) for t in complete}
                killed = running[0]
                break
        assert before, driver.stderr.read() if driver.stderr else "driver never mid-trial"

        if storage == "postgresql":
            # As from another machine that shares the storage and the results folder
            # but never saw this study: by name, its study.json rebuilt from the study.
            (folder / attrs.STUDY_FILE).unlink()
            where = ["--study", name, "--storage", url, "--results", str(tmp_path)]
        else:
            where = [str(folder)]
        resume = subprocess.run(
            [sys.executable, "-m", "devicefit", "resume", *where, "--ray", address],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert resume.returncode == 0, resume.stderr[-3000:]
        study = _load(folder, url)
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        assert len(complete) == 5  # none lost, none duplicated
        after = {t.number: (t.values, t.user_attrs[attrs.PLAN]) for t in complete}
        for number, record in before.items():
            assert after[number] == record
        reruns = [t for t in complete if t.user_attrs.get(attrs.RETRY_OF) == killed.number]
        assert len(reruns) == 1
        assert reruns[0].user_attrs[attrs.PLAN] == killed.user_attrs[attrs.PLAN]
        for trial in complete:
            assert (folder / attrs.TRIALS_DIR / str(trial.number) / "model.tflite").is_file()
            metrics = json.loads(
                (folder / attrs.TRIALS_DIR / str(trial.number) / "metrics.json").read_text()
            )
            assert metrics["built_on"]  # every trial ran on a Ray node
    finally:
        if driver.poll() is None:
            driver.kill()
        if storage == "postgresql":
            try:
                optuna.delete_study(study_name=name, storage=url)
            except KeyError:
                pass


def test_killing_the_worker_node_mid_trial_still_completes(tmp_path: Path) -> None:
    from ray_helpers import start_cluster

    cluster = start_cluster([{}])
    search = None
    try:
        folder = tmp_path / "node-killed"
        search = _search(tmp_path, "node-killed", 5, "--ray", cluster.address, "--workers", "2")
        deadline = time.time() + 600
        while len(list((folder / attrs.TRIALS_DIR).glob("*/metrics.json"))) < 2:
            assert search.poll() is None, search.stderr.read() if search.stderr else ""
            assert time.time() < deadline
            time.sleep(0.5)
        cluster.kill_node(1)  # the worker node, with whatever trial it is running
        _, stderr = search.communicate(timeout=900)
        assert search.returncode == 0, stderr[-3000:]
        study = _load(folder, None)
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        assert len(complete) == 5
        assert not study.get_trials(states=(TrialState.FAIL,))  # Ray re-ran it elsewhere
    finally:
        if search is not None and search.poll() is None:
            search.kill()
        cluster.stop()

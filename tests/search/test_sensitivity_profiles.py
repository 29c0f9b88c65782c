"""The sensitivity profile a study makes when it starts: saved point by point in the study
folder, resumed where a stopped study left it, never made twice."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from tiny_tasks import conv_task

from devicefit.search import attrs, sensitivity_profiles
from devicefit.search.sensitivity_profiles import (
    profile_granularity,
    read_sensitivity,
    write_sensitivity,
)
from devicefit.spaces import get_technique, sensitivity


def test_units_as_fine_as_the_study_searches() -> None:
    assert profile_granularity("per-layer") == "per-layer"
    assert profile_granularity("global") == "per-block"
    assert profile_granularity({"channel_pruning": "per-layer"}) == "per-layer"
    assert profile_granularity({"lowrank": "per-block"}) == "per-block"


def _tiny_task() -> SimpleNamespace:
    """A real Keras model (two conv blocks, a Dense head) on random 10-class data."""
    return conv_task(size=8, channels=1, filters=8, examples=64)


REAL_SCORE = sensitivity._score


class _CountingScores:
    """spaces/sensitivity.py's scoring, counted; stops (as Ctrl-C would) after ``stop_at``."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls = 0
        self.stop_at = stop_at

    def __call__(self, *args: object, **kwargs: object) -> float:
        if self.stop_at is not None and self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.calls += 1
        return REAL_SCORE(*args, **kwargs)


def _write(folder: Path, task: SimpleNamespace, names: list[str]) -> dict:
    techniques = [get_technique(n) for n in names]
    console = Console(file=io.StringIO())
    return write_sensitivity(folder, task, techniques, "per-layer", console)


def _every_point(task: SimpleNamespace, names: list[str]) -> set[tuple[str, str, str]]:
    from devicefit.spaces.blocks import find_blocks
    from devicefit.spaces.graph import graph_view

    blocks = find_blocks(graph_view(task.model))
    return {
        (unit, name, level)
        for name in names
        for unit in get_technique(name).units(task.model, "per-layer", blocks)
        for level in sensitivity.LEVEL_NAMES
    }


def test_a_stopped_profile_resumes_where_it_stopped_and_a_finished_one_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = _tiny_task()
    names = ["channel_pruning", "magnitude_pruning"]
    monkeypatch.setattr(sensitivity_profiles, "SAVE_EVERY_S", 0.0)  # save every point
    stopped = _CountingScores(stop_at=6)  # the untouched model's score, then 5 points
    monkeypatch.setattr(sensitivity, "_score", stopped)
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path, task, names)
    partial = read_sensitivity(tmp_path)
    assert partial is not None and partial["complete"] is False
    assert len(partial["points"]) == 5

    resumed = _CountingScores()
    monkeypatch.setattr(sensitivity, "_score", resumed)
    profile = _write(tmp_path, task, names)
    keys = [(p["unit"], p["technique"], p["level"]) for p in profile["points"]]
    assert len(keys) == len(set(keys))  # no point twice, and every unit x level of both
    assert set(keys) == _every_point(task, names)
    assert resumed.calls == len(keys) - 5 + 1  # only the rest, plus the untouched score
    assert profile["complete"] is True and profile["seconds"] > 0
    assert json.loads((tmp_path / attrs.SENSITIVITY_FILE).read_text()) == profile
    assert all(p["drop"] == 0.0 for p in profile["points"] if p["level"] == "identity")

    again = _CountingScores()
    monkeypatch.setattr(sensitivity, "_score", again)
    assert _write(tmp_path, task, names) == profile
    assert again.calls == 0  # a finished profile is not made again


def test_a_profile_made_for_other_techniques_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = _tiny_task()
    _write(tmp_path, task, ["channel_pruning"])
    profile = _write(tmp_path, task, ["magnitude_pruning"])
    assert {p["technique"] for p in profile["points"]} == {"magnitude_pruning"}
    assert profile["key"]["techniques"] == ["magnitude_pruning"]

"""What each unit of the untouched model gives up to each technique, profiled when a study
starts (spaces/sensitivity.py: mild, medium and strong settings on one unit at a time, no
fine-tuning, on a validation subset).

Saved point by point in ``sensitivity.json`` in the study folder, so a study stopped while
profiling resumes where it stopped and a finished profile is never made again; the report
shows it as "What each unit tolerates". A study with several workers (a local pool or Ray)
shares the points among them (search/sensitivity_request.py); the points are the same.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import time
from pathlib import Path
from typing import Any

from devicefit.search import attrs
from devicefit.search.artifacts import write_json_atomic
from devicefit.search.executors import Executor
from devicefit.search.sensitivity_request import profile_inputs, share_jobs
from devicefit.tasks.base import TaskSpec

SAVE_EVERY_S = 5.0  # how often a profile in progress is saved


def profile_granularity(granularity: str | dict[str, str]) -> str:
    """Units as fine as the study searches them: layers when any technique is searched per
    layer, else blocks (a global study's profile still says where the room is).

    Args:
        granularity: the study's granularity: one for all techniques, or by technique.

    Returns:
        "per-layer" or "per-block".
    """
    values = [granularity] if isinstance(granularity, str) else list(granularity.values())
    return "per-layer" if "per-layer" in values else "per-block"


def read_sensitivity(folder: Path) -> dict[str, Any] | None:
    """The study's saved profile, None when it has none (made before profiles, or lost).

    Args:
        folder: the study folder.

    Returns:
        The profile as saved (complete or not); None also for an unreadable file.
    """
    try:
        data = json.loads((folder / attrs.SENSITIVITY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("points"), list) else None


def write_sensitivity(
    folder: Path,
    task: Any,
    techniques: list[Any],
    granularity: str,
    console: Any,
    executor: Executor | None = None,
    spec: TaskSpec | None = None,
) -> dict[str, Any]:
    """Profile what is not profiled yet, saving as it goes; the whole profile.

    Args:
        folder, task, techniques, granularity: the study folder; what to profile, on what units.
        executor, spec: with an ``executor`` of several workers and the task's ``spec``, the points
            are shared among them (search/sensitivity_request.py); else they are scored here."""
    from devicefit.spaces.sensitivity import sensitivity_jobs

    x, y = profile_inputs(task)
    key: dict[str, Any] = {"granularity": granularity, "samples": int(len(x))}
    key["techniques"] = sorted(t.name for t in techniques)
    saved = read_sensitivity(folder)
    profile = _Saved(
        folder,
        saved
        if saved is not None and saved.get("key") == key
        else {"key": key, "points": [], "complete": False, "seconds": 0.0},
    )
    if profile.data.get("complete"):
        return profile.data
    done = {(p["unit"], p["technique"], p["level"]) for p in profile.data["points"]}
    jobs = sensitivity_jobs(task.model, techniques, granularity, done)
    profile.began = profile.saved_at = time.monotonic()  # the time spent scoring, from here
    with _bar(console) as bar:
        row = bar.add_task("points", total=len(jobs), unit=granularity.removeprefix("per-"))
        if executor is not None and executor.workers > 1 and spec is not None:
            requests = share_jobs(spec, jobs, executor.workers, int(len(x)))
            for future in cf.as_completed([executor.submit(r) for r in requests]):
                points = future.result()
                for point in points:
                    profile.keep(point)
                bar.advance(row, len(points))
        else:
            shown = lambda n: bar.update(row, completed=n)  # noqa: E731 - a one-line callback
            _score_here(task, jobs, techniques, x, y, profile, shown)
    order = {(j.unit, j.technique, j.level): n for n, j in enumerate(jobs)}
    points = profile.data["points"]
    points.sort(key=lambda p: order.get((p["unit"], p["technique"], p["level"]), -1))
    profile.save(True)
    console.print(_summary(profile.data, task.metric.name), markup=False)
    return profile.data


class _Saved:
    """A profile being made, saved to the results folder every ``SAVE_EVERY_S`` seconds
    (and at its end) with the time spent on it, summed over resumes."""

    def __init__(self, folder: Path, data: dict[str, Any]) -> None:
        self.folder, self.data = folder, data
        self.began = self.saved_at = time.monotonic()
        self.spent = float(data.get("seconds") or 0.0)

    def save(self, complete: bool) -> None:
        """Save the profile now, with the time spent on it so far.

        Args:
            complete: whether every point is in it.
        """
        self.data["seconds"] = self.spent + time.monotonic() - self.began
        self.data["complete"] = complete
        write_json_atomic(self.folder / attrs.SENSITIVITY_FILE, self.data)

    def keep(self, point: Any) -> None:
        """Add a scored point, and save when the last save is ``SAVE_EVERY_S`` old.

        Args:
            point: a SensitivityPoint.
        """
        self.data["points"].append({**point.to_dict(), "layers": list(point.layers)})  # as JSON
        if time.monotonic() - self.saved_at >= SAVE_EVERY_S:
            self.save(False)
            self.saved_at = time.monotonic()


def _bar(console: Any) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("sensitivity ({task.fields[unit]})"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console, transient=True)


def _score_here(
    task: Any,
    jobs: list[Any],
    techniques: list[Any],
    x: Any,
    y: Any,
    profile: _Saved,
    progress: Any,
) -> None:
    """Score ``jobs`` in this process, one after another, on the loaded model."""
    from devicefit.spaces.base import ConvertContext
    from devicefit.spaces.sensitivity import score_jobs

    score_jobs(
        task.model,
        jobs,
        {t.name: t for t in techniques},
        x,
        y,
        task.metric,
        ConvertContext(task.input_shape, task.calibration),
        on_point=profile.keep,
        progress=lambda n, _: progress(n),
    )


def _summary(profile: dict[str, Any], metric: str) -> str:
    """One line: how long it took and the units that tolerate the least."""
    strong = [p for p in profile["points"] if p["level"] == "strong" and p.get("drop") is not None]
    worst = sorted(strong, key=lambda p: -p["drop"])[:3]
    shown = ", ".join(f"{p['technique']} on {p['unit']} -{p['drop']:.3g}" for p in worst)
    return (
        f"sensitivity: {len(profile['points'])} points in {profile['seconds']:.0f} s"
        + (f"; least tolerant at the strong setting ({metric}): {shown}" if shown else "")
        + f"; {attrs.SENSITIVITY_FILE}"
    )

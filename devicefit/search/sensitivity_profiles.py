"""What each unit of the untouched model gives up to each technique, profiled when a study
starts (spaces/sensitivity.py: mild, medium and strong settings on one unit at a time, no
fine-tuning, on a validation subset).

Saved point by point in ``sensitivity.json`` in the study folder, so a study stopped while
profiling resumes where it stopped and a finished profile is never made again; the report
shows it as "What each unit tolerates".
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from devicefit.search import attrs
from devicefit.search.artifacts import write_json_atomic

SAMPLES = 256  # validation examples each point is scored on
SAVE_EVERY_S = 5.0  # how often a profile in progress is saved


def profile_granularity(granularity: str | dict[str, str]) -> str:
    """Units as fine as the study searches them: layers when any technique is searched per
    layer, else blocks (a global study's profile still says where the room is)."""
    values = [granularity] if isinstance(granularity, str) else list(granularity.values())
    return "per-layer" if "per-layer" in values else "per-block"


def read_sensitivity(folder: Path) -> dict[str, Any] | None:
    """The study's saved profile, None when it has none (made before profiles, or lost)."""
    try:
        data = json.loads((folder / attrs.SENSITIVITY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("points"), list) else None


def write_sensitivity(
    folder: Path, task: Any, techniques: list[Any], granularity: str, console: Any
) -> dict[str, Any]:
    """Profile what is not profiled yet, saving as it goes; the whole profile."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from devicefit.spaces.base import ConvertContext
    from devicefit.spaces.sensitivity import SensitivityPoint, sensitivity_profile

    x, y = task.data.x_val[:SAMPLES], task.data.y_val[:SAMPLES]
    key = {
        "granularity": granularity,
        "samples": int(len(x)),
        "techniques": sorted(t.name for t in techniques),
    }
    saved = read_sensitivity(folder)
    profile: dict[str, Any] = (
        saved
        if saved is not None and saved.get("key") == key
        else {"key": key, "points": [], "complete": False, "seconds": 0.0}
    )
    if profile.get("complete"):
        return profile
    done = {(p["unit"], p["technique"], p["level"]) for p in profile["points"]}
    began, saved_at = time.monotonic(), time.monotonic()
    spent = float(profile.get("seconds") or 0.0)

    def save(complete: bool) -> None:
        profile["seconds"] = spent + time.monotonic() - began
        profile["complete"] = complete
        write_json_atomic(folder / attrs.SENSITIVITY_FILE, profile)

    def keep(point: SensitivityPoint) -> None:
        nonlocal saved_at
        profile["points"].append({**point.to_dict(), "layers": list(point.layers)})  # as JSON
        if time.monotonic() - saved_at >= SAVE_EVERY_S:
            save(False)
            saved_at = time.monotonic()

    columns = (
        TextColumn("sensitivity ({task.fields[unit]})"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        job = bar.add_task("points", total=None, unit=granularity.removeprefix("per-"))
        sensitivity_profile(
            task.model,
            techniques,
            x,
            y,
            task.metric,
            ConvertContext(task.input_shape, task.calibration),
            granularity,
            progress=lambda n, total: bar.update(job, completed=n, total=total),
            done=done,
            on_point=keep,
        )
    save(True)
    console.print(_summary(profile, task.metric.name), markup=False)
    return profile


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

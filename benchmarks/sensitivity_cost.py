"""What the profiles a search makes before its first trial cost, against the search itself.

    python benchmarks/sensitivity_cost.py             # digits and sr, per-block and per-layer
    python benchmarks/sensitivity_cost.py digits --granularity per-block
    python benchmarks/sensitivity_cost.py digits --granularity per-block --workers 1 --workers 2

Per task: the device profile of the float32 and int8 files on ``local`` (what a search writes
as device_profile.json) and the sensitivity profile of every technique a default search
uses (sensitivity.json), both made the way a search makes them, in a fresh folder; their
time is printed beside a tenth of the task's default 30-trial search, from
benchmarks/README.md's search rows (``--search-minutes`` to give another). ``--workers N``
(repeatable): the sensitivity profile shared among a local pool of N workers, as a study with
``--workers N`` makes it (1: in the driver's process). Then, as a search does, the time each
setting saves predicted from the device profile and checked by measuring three (its own
time is printed apart). Markdown rows.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from datetime import date
from pathlib import Path

from machine import commit, machine

from devicefit.quiet import silence_tensorflow

silence_tensorflow()

# A default 30-trial search of each task here (minutes), benchmarks/README.md: digits 30
# trials (2026-11-26); sr from its 60-trial search (54.5 min), halved.
SEARCH_MINUTES = {"digits": 10.9, "sr": 54.5 * 30 / 60}
HEADER = (
    "| task | profile | units | workers | points | seconds | a tenth of a 30-trial search (s) |"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="*", default=["digits", "sr"])
    parser.add_argument("--granularity", action="append", choices=["per-block", "per-layer"])
    parser.add_argument("--search-minutes", type=float)
    parser.add_argument("--workers", type=int, action="append")
    args = parser.parse_args()

    from rich.console import Console

    from devicefit.config import StudyConfig
    from devicefit.evaluators.local import LocalEvaluator
    from devicefit.search import attrs
    from devicefit.search.artifacts import write_json_atomic
    from devicefit.search.device_profiles import write_device_profiles
    from devicefit.search.executors import make_executor
    from devicefit.search.run import build_space
    from devicefit.search.sensitivity_profiles import write_sensitivity
    from devicefit.search.sensitivity_savings import add_savings
    from devicefit.tasks import TaskSpec, load_task

    console = Console(file=io.StringIO())
    checks: list[tuple] = []
    print(f"machine: {machine()}; date {date.today()}; commit {commit()}")
    print(HEADER)
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name in args.tasks:
        task = load_task(TaskSpec(name))
        space = build_space(StudyConfig(task=name), task.model)
        tenth = 60 * (args.search_minutes or SEARCH_MINUTES[name]) / 10
        devices = {"local": LocalEvaluator()}
        with tempfile.TemporaryDirectory() as folder:
            began = time.perf_counter()
            device_profiles = write_device_profiles(Path(folder), task, devices, 1, console)
            seconds = time.perf_counter() - began
            row = f"| {name} | device (float32 + int8) | layers | 1 | | {seconds:.1f} |"
            print(f"{row} {tenth:.0f} |")
        for granularity in args.granularity or ["per-block", "per-layer"]:
            for workers in args.workers or [1]:
                with tempfile.TemporaryDirectory() as folder:
                    write_json_atomic(Path(folder) / attrs.DEVICE_PROFILE_FILE, device_profiles)
                    began = time.perf_counter()  # the pool's start is part of the cost
                    executor = make_executor(workers) if workers > 1 else None
                    try:
                        profile = write_sensitivity(
                            Path(folder),
                            task,
                            space.techniques,
                            granularity,
                            console,
                            executor,
                            TaskSpec(name),
                        )
                    finally:
                        if executor is not None:
                            executor.shutdown()
                    seconds = time.perf_counter() - began
                    began = time.perf_counter()
                    add_savings(Path(folder), profile, task, devices, 1, console)
                    seconds_check = time.perf_counter() - began
                    checks.append((name, granularity, workers, seconds_check, profile))
                failed = sum(p["error"] is not None for p in profile["points"])
                print(
                    f"| {name} | sensitivity ({len(space.techniques)} techniques"
                    f"{f', {failed} failed' if failed else ''}) | {granularity} | {workers} "
                    f"| {len(profile['points'])} | {seconds:.1f} | {tenth:.0f} |",
                    flush=True,
                )
    print("\nTime saved, predicted from the device profile and measured (paired rounds):")
    print("| task | units | workers | setting | predicted ms | measured ms | untouched ms |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for name, granularity, workers, seconds, profile in checks:
        for c in profile["savings_check"]:
            setting = f"{c['technique']} {c['level']} on {c['unit']}"
            measured = (
                f"{c['error']} |"
                if "error" in c
                else f"{c['measured_ms']:.3f} | {c['untouched_ms']:.3f}"
            )
            head = f"| {name} | {granularity} | {workers} | {setting}"
            print(f"{head} | {c['predicted_ms']:.3f} | {measured} |")
        print(f"| {name} | {granularity} | {workers} | (check took {seconds:.1f} s) | | | |")


if __name__ == "__main__":
    main()

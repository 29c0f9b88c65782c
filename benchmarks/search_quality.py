"""Search-quality benchmark: does a seeded search find what the issue promises?

    python benchmarks/search_quality.py digits   # 30 trials: >= 2x faster, <= 1 point lost
    python benchmarks/search_quality.py sr       # 40 trials: >= 3x faster, <= 0.3 dB lost
    python benchmarks/search_quality.py sr-full  # 60 trials, every technique: >= 8x, <= 0.3 dB

Every target searches with the default technique set, which is all of them.

Runs the real CLI, then reads the study and prints one Markdown table row for
benchmarks/README.md (machine, date, wall time, best feasible candidate).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import optuna
from optuna.trial import TrialState

TARGETS = {
    # name: (task, trials, required speedup vs float32, allowed metric drop)
    "digits": ("digits", 30, 2.0, 1.0),  # issue 2
    "sr": ("sr", 40, 3.0, 0.3),  # issue 2
    "sr-full": ("sr", 60, 8.0, 0.3),  # issue 3: the full technique set
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--results", default="results/benchmarks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    task, trials, speedup, drop = TARGETS[args.target]
    name = f"bench-{args.target}-{int(time.time())}"
    command = [
        sys.executable,
        "-m",
        "devicefit",
        "search",
        "--task",
        task,
        "--trials",
        str(trials),
        "--seed",
        str(args.seed),
        "--study",
        name,
        "--results",
        args.results,
        "--workers",
        str(args.workers),
    ]
    began = time.time()
    subprocess.run(command, check=True)
    minutes = (time.time() - began) / 60
    folder = Path(args.results) / name
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    ref = next(t for t in complete if t.user_attrs.get("baseline") == "float32")
    best = None
    for t in complete:
        lost = ref.values[0] - t.values[0]
        gain = ref.values[1] / t.values[1]
        if lost <= drop and (best is None or gain > best[1]):
            best = (t, gain, lost)
    assert best is not None
    trial, gain, lost = best
    ok = gain >= speedup
    print(
        f"| {date.today()} | {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"| `{' '.join(['devicefit', *command[3:]])}` | {minutes:.1f} min "
        f"| {ref.values[1]:.3f} ms, {ref.values[0]:.2f} "
        f"| #{trial.number}: {trial.values[1]:.3f} ms "
        f"({gain:.2f}x), {trial.values[0]:.2f} ({-lost:+.2f}) | {trial.user_attrs['plan_short']} "
        f"| {'PASS' if ok else 'FAIL'} (needs >= {speedup}x within {drop}) |"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

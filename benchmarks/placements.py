"""Repeatability of one measurement over one load of a file against several (placements).

    python benchmarks/placements.py                 # digits float32, 12 measurements each
    python benchmarks/placements.py --task sr --repeats 20

Measures the task's float32 file as a search does on ``local`` (each measurement in a fresh
child process, pinned), alternating a measurement over one load with one over the default
number of loads, so the host's drift hits both alike. Prints, per setting, the medians, their
spread (max/min) and coefficient of variation, and a Markdown row for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import statistics
from datetime import date

from machine import commit, machine

from devicefit.quiet import silence_tensorflow

silence_tensorflow()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="digits")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--min-seconds", type=float, default=1.5)
    args = parser.parse_args()

    from devicefit.evaluators.base import BenchmarkSpec
    from devicefit.evaluators.local import LocalEvaluator
    from devicefit.spaces.convert import to_tflite
    from devicefit.tasks import TaskSpec, load_task

    task = load_task(TaskSpec(args.task))
    tflite = to_tflite(task.model, task.input_shape)
    default = BenchmarkSpec().placements
    settings = {1: [], default: []}
    print(f"machine: {machine()}; date {date.today()}; commit {commit()}")
    for n in range(args.repeats):
        for placements, medians in settings.items():
            spec = BenchmarkSpec(min_seconds=args.min_seconds, placements=placements)
            m = LocalEvaluator().measure(tflite, spec)
            medians.append(m.median_ms)
            print(f"{n:3d} placements={placements}: median {m.median_ms:.3f} ms", flush=True)
    print("| task | loads per measurement | measurements | median of medians (ms) | max/min | CV |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for placements, medians in settings.items():
        spread = max(medians) / min(medians)
        cv = statistics.stdev(medians) / statistics.mean(medians)
        print(
            f"| {args.task} float32 | {placements} | {len(medians)} "
            f"| {statistics.median(medians):.3f} | {spread:.3f} | {cv:.1%} |"
        )


if __name__ == "__main__":
    main()

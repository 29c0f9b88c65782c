"""Latency of the built-in tasks' untouched float32 files on this machine.

    python benchmarks/task_latency.py              # digits and sr, 5 measurements each
    python benchmarks/task_latency.py digits --repeats 10

Each measurement is what a search stores for the float32 baseline: the local device (a fresh
child process, time-based warm-up, at least 50 runs and 1 s), one thread. The digits model
must take at least 1 ms here (tests/tasks/test_digits.py); this records by how much it does.
Prints a Markdown row per task for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
from datetime import date

from machine import commit, machine

from devicefit.quiet import silence_tensorflow

silence_tensorflow()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="*", default=["digits", "sr"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from devicefit.evaluators.base import BenchmarkSpec
    from devicefit.evaluators.local import LocalEvaluator
    from devicefit.spaces.convert import to_tflite
    from devicefit.spaces.macs import keras_macs
    from devicefit.tasks import TaskSpec, load_task

    where = machine()
    print(f"machine: {where}; date {date.today()}; commit {commit()}")
    print("| date | machine | commit | task | MMACs | medians of the runs (ms) | min (ms) |")
    print("| --- | --- | --- | --- | ---: | --- | ---: |")
    for name in args.tasks:
        task = load_task(TaskSpec(name))
        tflite = to_tflite(task.model, task.input_shape)
        medians, fastest = [], []
        for _ in range(args.repeats):
            measured = LocalEvaluator().measure(tflite, BenchmarkSpec(threads=1))
            medians.append(measured.median_ms)
            fastest.append(measured.min_ms)
        macs = keras_macs(task.model, task.input_shape) / 1e6
        runs = ", ".join(f"{m:.3f}" for m in medians)
        print(
            f"| {date.today()} | {where} | {commit()} | {name} | {macs:.0f} | {runs} "
            f"| {min(fastest):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

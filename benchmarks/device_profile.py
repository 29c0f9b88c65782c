"""Where the time goes: device profiles of the built-in tasks' float32 and int8 files.

    python benchmarks/device_profile.py            # digits and sr, on local, one thread
    python benchmarks/device_profile.py sr --repeats 5

Each profile is what ``devicefit inspect --device local`` measures: the file measured in a
fresh child process, then 200 runs profiled op by op by LiteRT (deploy/op_profiler.py), every
op's time traced to its Keras layer. Prints, per task and file, each layer's share of the
MACs and of the measured time (median over the repeats), how long a profile took, and the
share of the run the ops account for. Markdown rows for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date

from machine import commit, machine

from devicefit.quiet import silence_tensorflow

silence_tensorflow()


def _int8(task):  # noqa: ANN001, ANN202 - a Task; the converter's own option object
    from devicefit.spaces.convert import to_tflite

    calibration = task.calibration[:64]

    def configure(converter) -> None:  # noqa: ANN001
        import tensorflow as tf

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    return to_tflite(task.model, task.input_shape, configure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="*", default=["digits", "sr"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from devicefit.evaluators.local import LocalEvaluator
    from devicefit.spaces.convert import to_tflite
    from devicefit.spaces.device_profile import device_profile
    from devicefit.spaces.macs import macs_by_layer
    from devicefit.tasks import TaskSpec, load_task

    where = machine()
    print(f"machine: {where}; date {date.today()}; commit {commit()}")
    print("| task | file | layer | MACs share | time share (median of runs) | ms |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    cost = []
    for name in args.tasks:
        task = load_task(TaskSpec(name))
        macs = macs_by_layer(task.model, task.input_shape)
        total_macs = sum(macs.values())
        for label, tflite in (
            ("float32", to_tflite(task.model, task.input_shape)),
            ("int8", _int8(task)),
        ):
            shares: dict[str, list[float]] = {}
            times: dict[str, list[float]] = {}
            covered = []
            for _ in range(args.repeats):
                began = time.perf_counter()
                profile, median = device_profile(
                    task.model, task.input_shape, LocalEvaluator(), 1, tflite
                )
                cost.append((name, label, time.perf_counter() - began))
                covered.append(profile.total_ms / profile.run_ms)
                for layer, ms in profile.layers.items():
                    shares.setdefault(layer, []).append(ms / profile.total_ms)
                    times.setdefault(layer, []).append(ms)
            for layer in shares:
                print(
                    f"| {name} | {label} | {layer} | {macs.get(layer, 0) / total_macs:.1%} "
                    f"| {statistics.median(shares[layer]):.1%} "
                    f"| {statistics.median(times[layer]):.3f} |",
                    flush=True,
                )
            print(
                f"| {name} | {label} | (ops / run) | | "
                f"{min(covered):.1%}-{max(covered):.1%} | median {median:.3f} |",
                flush=True,
            )
    print()
    print("| task | file | seconds per profile (measurement + 200 profiled runs) |")
    print("| --- | --- | --- |")
    for name in args.tasks:
        for label in ("float32", "int8"):
            seconds = [s for n, f, s in cost if (n, f) == (name, label)]
            print(f"| {name} | {label} | {', '.join(f'{s:.1f}' for s in seconds)} |")


if __name__ == "__main__":
    main()

"""Repeatability of stored latencies: the same files measured 10 times each during a running
`--workers 2` search, through the path every trial's measurement takes.

    python benchmarks/measurement.py                 # digits float32 and int8, SRCNN float32
    python benchmarks/measurement.py --repeats 10 --results /tmp/measurement

For each task the script starts a real search (two workers, fine-tuning candidates) and,
after each searched trial is handed to a worker, enqueues a probe: a baseline plan the study
already measured (the float32 and int8 files for digits, float32 for sr). The driver takes a
probe as the same candidate as that baseline: nothing is built, the file is measured again
while the other worker holds its trial (paused: the quiet host), pinned, until the median's
interval is within +-2%, then timed in paired rounds with its reference file
(search/reference_speed.py). Each probe's stored latency (its own fresh one, not pooled) is
what this benchmark compares: for each file, the largest over the smallest (target: at most
1.05). Baseline files are references themselves, so a searched file of each kernel family is
measured as often after the search (``searched_files``). Prints Markdown rows for
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from machine import commit, machine
from rich.console import Console

STUDY = {
    "digits": (
        'task = "digits"\nseed = 0\nconfirm_rounds = 0\n'
        'techniques = ["channel_pruning", "lowrank", "quantization"]\n'
        "[ranges.finetune]\nepochs = [1, 2]\n",
        ["float32", "int8"],
    ),
    "sr": (
        'task = "sr"\nseed = 0\nconfirm_rounds = 0\n'
        'techniques = ["channel_pruning", "kernel_reduction", "quantization"]\n'
        "[ranges.finetune]\nepochs = [1, 1]\n",
        ["float32"],
    ),
}
PROBE = "measurement_probe"


def run_task(task: str, repeats: int, results: Path, console: Console) -> dict[str, list[float]]:
    """Run the probing search for ``task``; each probed file's fresh medians, in order."""
    import optuna
    from optuna.trial import TrialState

    from devicefit.config import build_config
    from devicefit.search import attrs, run
    from devicefit.search.driver import Driver

    text, modes = STUDY[task]
    config_file = results / f"{task}.toml"
    config_file.write_text(text)
    # Every probe after a searched trial, until each mode has ``repeats`` measurements
    # (its baseline trial is the first of them).
    probes = [mode for _ in range(repeats - 1) for mode in modes]
    searched = len(probes) + 2  # the last probes still find a trial in flight
    trials = 3 + len(probes) + searched
    config = build_config(
        config_file,
        {"trials": trials, "workers": 2, "study": f"probe-{task}", "results": str(results)},
    )

    class ProbingDriver(Driver):
        def _build(self, trial: Any, plan: Any) -> Any:
            future = super()._build(trial, plan)
            searched = not ({attrs.BASELINE, PROBE} & set(trial.user_attrs))
            if searched and probes and self.complete() >= 3:
                self.study.enqueue_trial(
                    {}, user_attrs={attrs.BASELINE: probes.pop(0), PROBE: True}
                )
            return future

    original = run.Driver
    run.Driver = ProbingDriver  # type: ignore[misc]
    try:
        code = run.start_search(config, console)
    finally:
        run.Driver = original  # type: ignore[misc]
    if code != 0:
        raise SystemExit(f"the {task} search failed (exit {code})")
    folder = results / f"probe-{task}"
    study = optuna.load_study(study_name=folder.name, storage=f"sqlite:///{folder / 'study.db'}")
    medians: dict[str, list[float]] = {mode: [] for mode in modes}
    beside: dict[str, list[int]] = {mode: [] for mode in modes}
    for trial in sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        mode = trial.user_attrs.get(attrs.BASELINE)
        if mode in medians:
            metrics = trial.user_attrs[attrs.METRICS]
            medians[mode].append(metrics["latency"]["local"]["median_ms"])
            beside[mode].append(int(metrics.get("paused_trials") or 0))
    for mode in modes:
        held = sum(1 for n in beside[mode] if n >= 1)
        console.print(
            f"{task} {mode}: {len(medians[mode])} measurements, {held} while the other "
            f"worker held a trial: {', '.join(f'{m:.3f}' for m in medians[mode])}"
        )
    medians.update(searched_files(study, folder, config, repeats, console))
    return medians


def searched_files(
    study: Any, folder: Path, config: Any, repeats: int, console: Console
) -> dict[str, list[float]]:
    """The probes above are baseline files, which are references themselves (an int8 or
    float32 baseline probed is paired with itself). So the first searched file of each
    kernel family, not a reference, is measured ``repeats`` times more, after the search,
    through the same two steps a trial's measurement takes (its own runs, then paired rounds
    with its reference)."""
    from optuna.trial import TrialState

    from devicefit.evaluators.base import RoundsSpec
    from devicefit.evaluators.local import LocalEvaluator
    from devicefit.search import attrs
    from devicefit.search.measuring import measurement_spec
    from devicefit.search.reference_speed import References, at_reference_speed, family

    complete = study.get_trials(states=(TrialState.COMPLETE,))
    references = References(folder)
    references.learn(complete)
    device = LocalEvaluator()
    spec = measurement_spec(config)
    rounds = RoundsSpec(threads=config.threads, rounds=config.paired_rounds)
    found: dict[str, list[float]] = {}
    families: set[str] = set()
    for trial in sorted(complete, key=lambda t: t.number):
        if {attrs.BASELINE, PROBE, attrs.SAME_AS} & set(trial.user_attrs):
            continue
        tflite = (folder / attrs.TRIALS_DIR / str(trial.number) / "model.tflite").read_bytes()
        kind = family(tflite)
        if kind in families:
            continue
        families.add(kind)
        key = f"searched {kind} (#{trial.number})"
        reference = references.for_file(tflite)
        values = found[key] = []
        for _ in range(repeats):
            measured = at_reference_speed(
                device, "local", tflite, device.measure(tflite, spec), reference, rounds
            )
            values.append(measured.median_ms)
        console.print(f"{key}: {', '.join(f'{m:.3f}' for m in values)}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--tasks", nargs="+", default=["digits", "sr"], choices=sorted(STUDY))
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    results = args.results or Path(tempfile.mkdtemp(prefix="devicefit-measurement-"))
    results.mkdir(parents=True, exist_ok=True)
    console = Console()
    where, at = machine(), commit()
    rows = []
    for task in args.tasks:
        for mode, values in run_task(task, args.repeats, results, console).items():
            spread = max(values) / min(values)
            rows.append(
                f"| {date.today()} | {where} | {at} | {task} {mode} | {len(values)} "
                f"| {min(values):.3f} | {statistics.median(values):.3f} | {max(values):.3f} "
                f"| {spread:.3f} | {'PASS' if spread <= 1.05 else 'FAIL'} (<= 1.05) |"
            )
    print(
        "| date | machine | commit | file | measurements | min ms | median ms | max ms "
        "| max/min | verdict |"
    )
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""What one structural step saves in a float32 file and in an int8 file of the same model.

    python benchmarks/int8_step_savings.py              # ResNet-20 at 32x32, 6 rounds

The greedy plans and the sensitivity profile predict a step's saving as the untouched
file's layer time times the share of the layer's MACs the step removes
(search/sensitivity_savings.py). This script checks that model where it matters for
issue 14's residual net: ResNet-20 (benchmarks/user_models.py, random weights: timing does
not depend on them) with each step applied to the whole model, converted as float32 and as
full-integer int8, each file timed with ``devicefit benchmark`` (one thread) in rounds that
alternate the files, so the host's drift falls on all of them alike. Prints the median of
the rounds per file and its change against the untouched file of the same mode; a
Markdown row per step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from statistics import median

from machine import commit, machine

from devicefit.quiet import silence_tensorflow

silence_tensorflow()

STEPS = {
    "untouched": [],
    "lowrank spatial, rank 0.25": [
        ("lowrank", {"method": "spatial", "rank_ratio": 0.25, "rank_rule": "ratio"})
    ],
    "channel pruning 0.25 (l1)": [("channel_pruning", {"ratio": 0.25, "importance": "l1"})],
    "depth pruning 0.34": [("depth_pruning", {"ratio": 0.34})],
}
MODES = ("float32", "int8")


def build_files(folder: Path) -> dict[tuple[str, str], Path]:
    """Every step's float32 and int8 file of ResNet-20, written to ``folder``."""
    import keras
    import numpy as np
    from user_models import resnet20

    from devicefit.search.trial import convert_candidate
    from devicefit.spaces import get_technique

    keras.utils.set_random_seed(0)
    base = resnet20(32)
    calibration = np.random.default_rng(0).random((32, 32, 32, 1), dtype=np.float32)
    files = {}
    for name, steps in STEPS.items():
        model, applied = base, []
        for technique, params in steps:
            tech = get_technique(technique)
            tech.prepare(calibration)
            model = tech.rewrite(model, params).model
            applied.append((tech, params))
        for mode in MODES:
            tflite = convert_candidate(
                model,
                [*applied, (get_technique("quantization"), {"mode": mode})],
                (1, 32, 32, 1),
                calibration,
            )
            path = folder / f"{mode}-{len(files)}.tflite"
            path.write_bytes(tflite)
            files[(name, mode)] = path
    return files


def timed(path: Path, seconds: float) -> float:
    run = subprocess.run(
        [sys.executable, "-m", "devicefit", "benchmark", str(path), "--threads", "1"]
        + ["--min-seconds", str(seconds), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(run.stdout.strip().splitlines()[-1])["median_ms"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=1.0, help="per file per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        files = build_files(Path(folder))
        runs: dict[tuple[str, str], list[float]] = {key: [] for key in files}
        for number in range(args.rounds):
            for key, path in files.items():
                runs[key].append(timed(path, args.seconds))
            print(
                f"round {number + 1}: "
                + json.dumps({f"{k[1]} {k[0]}": v[-1] for k, v in runs.items()}),
                flush=True,
            )
    medians = {key: median(values) for key, values in runs.items()}
    print(f"\n{date.today()} · {machine()} · commit {commit()} · {args.rounds} rounds\n")
    print("| step | float32 ms | change | int8 ms | change |")
    print("| --- | --- | --- | --- | --- |")
    for name in STEPS:
        cells = []
        for mode in MODES:
            ms, base = medians[(name, mode)], medians[("untouched", mode)]
            cells += [f"{ms:.3f}", f"{100 * (ms / base - 1):+.0f}%"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

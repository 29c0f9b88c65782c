"""How well the drop before fine-tuning predicts the drop after it, with and without the
BatchNorm statistics re-estimated (spaces/batchnorm_stats.py; EagleEye's adaptive BN).

The greedy plans rank steps on the sensitivity profile's drops before fine-tuning and the
rejection prunes candidates on them: both only help if those drops order candidates as
fine-tuning will. For channel-pruned candidates of a built-in task (random ratios per
layer), this scores each on the validation split with the untouched model's statistics
("stale"), with its statistics re-estimated on the 128 calibration inputs ("fresh"), and
after fine-tuning from the fresh model as a trial does; it prints Spearman's rank
correlation of each with the drop after, and every candidate's numbers.

    python benchmarks/adaptive_bn.py --task digits --candidates 12 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import commit, machine  # noqa: E402
from devicefit.quiet import silence_tensorflow  # noqa: E402

silence_tensorflow()

RATIOS = (0.0, 0.25, 0.5, 0.7)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits")
    parser.add_argument("--candidates", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras
    from scipy.stats import spearmanr

    from devicefit.search.finetune import finetune
    from devicefit.search.rejection import validation_drop
    from devicefit.spaces import get_technique
    from devicefit.spaces.base import PER_LAYER
    from devicefit.spaces.batchnorm_stats import recalibrate_batchnorm
    from devicefit.tasks import TaskSpec, load_task

    print(f"machine: {machine()}; commit {commit()}; {time.strftime('%Y-%m-%d %H:%M')}")
    task = load_task(TaskSpec(args.task))
    tech = get_technique("channel_pruning")
    tech.prepare(task.calibration)
    units = list(tech.units(task.model, "per-layer", {}))
    rng = np.random.default_rng(args.seed)
    rows = []
    for number in range(args.candidates):
        ratios = {unit: float(rng.choice(RATIOS)) for unit in units}
        keras.utils.set_random_seed(args.seed + number)
        params = {**tech.identity_params(), PER_LAYER: {u: {"ratio": r} for u, r in ratios.items()}}
        model = tech.rewrite(task.model, params).model
        stale = validation_drop(model, task)
        recalibrate_batchnorm(model, task.calibration, task.model)
        fresh = validation_drop(model, task)
        clock = time.perf_counter()
        finetune(model, task, args.epochs, [])
        after = validation_drop(model, task)
        row = {
            "candidate": number,
            "ratios": ratios,
            "stale": round(stale, 3),
            "fresh": round(fresh, 3),
            "after": round(after, 3),
            "finetune_s": round(time.perf_counter() - clock, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    after = [r["after"] for r in rows]
    summary = {
        "task": args.task,
        "candidates": len(rows),
        "epochs": args.epochs,
        "spearman_stale_vs_after": round(float(spearmanr([r["stale"] for r in rows], after)[0]), 3),
        "spearman_fresh_vs_after": round(float(spearmanr([r["fresh"] for r in rows], after)[0]), 3),
        "median_stale": float(np.median([r["stale"] for r in rows])),
        "median_fresh": float(np.median([r["fresh"] for r in rows])),
        "median_after": float(np.median(after)),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

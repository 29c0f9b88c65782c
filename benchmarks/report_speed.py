"""How long writing a study's report takes as studies grow (the driver rewrites it live).

Synthetic studies in SQLite, stored the way a search stores them (devicefit/search/attrs.py),
with 1 or 2 devices and optionally a peak-memory objective per device (2 to 5 objectives);
times ``load_study_record`` and ``write_report`` and prints the page size.

    python benchmarks/report_speed.py --trials 100 500 2000
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import optuna

from devicefit.results import load_study_record, pareto_front, write_report
from devicefit.search import attrs

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_study(
    folder: Path, trials: int, devices: int, memory: bool, independent: bool = False, seed: int = 0
) -> None:
    """``independent``: every objective drawn on its own, the worst case (a large front);
    otherwise latency and memory follow the rank, as they do in real searches."""
    names = [f"dev{i}" for i in range(devices)]
    objectives = [{"name": "accuracy", "direction": "maximize", "unit": "%"}]
    objectives += [
        {"name": f"latency_{d}", "direction": "minimize", "unit": "ms", "device": d} for d in names
    ]
    if memory:
        objectives += [
            {
                "name": f"peak_memory_{d}",
                "direction": "minimize",
                "unit": "MB",
                "device": d,
                "kind": "peak_memory",
            }
            for d in names
        ]
    folder.mkdir(parents=True)
    study = optuna.create_study(
        study_name=folder.name,
        storage=f"sqlite:///{folder / attrs.DB_FILE}",
        directions=[o["direction"] for o in objectives],
    )
    study.set_user_attr(
        attrs.STUDY_KEY,
        {
            "task": "synthetic",
            "metric": {"name": "accuracy", "higher_is_better": True, "unit": "%"},
            "objectives": objectives,
            "max_metric_drop": 1.0,
            "reference_metric": 97.0,
            "devices": {d: {"kind": "local"} for d in names},
            "version": "bench",
        },
    )
    (folder / attrs.STUDY_FILE).write_text(
        json.dumps({"study_name": folder.name, "storage": None, "config": {}, "created": None})
    )
    rng = random.Random(seed)
    layers = {f"conv{i}": 1_000_000 for i in range(40)}
    for n in range(trials):
        rank, sparsity = rng.random(), rng.random()
        metric = 97.0 - 2.5 * (1 - rank) * rng.random()
        latency = {
            d: (1 + 7 * (rng.random() if independent else rank)) * (1 + 0.3 * i)
            for i, d in enumerate(names)
        }
        memory_mb = {d: 20 + 30 * (rng.random() if independent else rank) for d in names}
        values = [metric, *latency.values()] + (list(memory_mb.values()) if memory else [])
        metrics = {
            "metric": metric,
            "metric_drop": 97.0 - metric,
            "size_bytes": int(1e6 * rank),
            "macs": int(4e7 * rank),
            "params": int(1e6 * rank),
            "layer_macs": {k: int(v * rank) for k, v in layers.items()},
            "latency": {
                d: {
                    "median_ms": latency[d],
                    "p90_ms": latency[d] * 1.1,
                    "min_ms": latency[d] * 0.9,
                    "std_ms": 0.1,
                    "count": 50,
                    "threads": 1,
                    "peak_memory_mb": memory_mb[d],
                }
                for d in names
            },
            "notes": [],
        }
        plan = {
            "steps": [
                {"technique": "lowrank", "params": {"rank_ratio": rank}},
                {"technique": "magnitude_pruning", "params": {"sparsity": sparsity}},
            ],
            "finetune_epochs": 1,
        }
        study.add_trial(
            optuna.trial.create_trial(
                values=values,
                params={"lowrank.rank_ratio": rank, "magnitude_pruning.sparsity": sparsity},
                distributions={
                    "lowrank.rank_ratio": optuna.distributions.FloatDistribution(0, 1),
                    "magnitude_pruning.sparsity": optuna.distributions.FloatDistribution(0, 1),
                },
                user_attrs={attrs.PLAN: plan, attrs.PLAN_SHORT: f"t{n}", attrs.METRICS: metrics},
                constraints={attrs.CONSTRAINT: (97.0 - metric) - 1.0},
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument(
        "--independent", action="store_true", help="objectives drawn independently (large fronts)"
    )
    args = parser.parse_args()
    print("| trials | objectives | on the front | load s | write s | report.html MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for trials in args.trials:
        for devices, memory in ((1, False), (2, False), (2, True)):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / f"bench-{trials}"
                make_study(folder, trials, devices, memory, args.independent)
                clock = time.perf_counter()
                record = load_study_record(folder)
                loaded = time.perf_counter() - clock
                clock = time.perf_counter()
                paths = write_report(record, folder, live=True)
                written = time.perf_counter() - clock
                size = paths["html"].stat().st_size / 1e6
                k, front = len(record.objectives), len(pareto_front(record))
                print(
                    f"| {trials} | {k} | {front} | {loaded:.2f} | {written:.2f} | {size:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

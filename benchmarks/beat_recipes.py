"""Does the search beat the obvious recipe? Issue 14's numbers, computed from studies.

    python benchmarks/beat_recipes.py run digits --seed 0 [--sampler random]
    python benchmarks/beat_recipes.py run resnet20 --seed 0    # or mobilenetv2: user models
    python benchmarks/beat_recipes.py numbers results/benchmarks/<study> [...]

``run`` starts the real CLI on a target (profiles on: ``--sensitivity``; the study's own
paired confirmation at the end measures the best candidate against the best peer recipe)
and then prints the numbers. ``numbers`` reads finished studies and prints, per study:

- the best candidate within the budget and the best feasible peer recipe (the float16/int8
  baselines and the one-technique recipes), their stored medians, and the speed-up of one
  over the other from the paired rounds (median of per-round ratios, 95% interval);
- the speed-up over float32 (stored medians; paired too when the best candidate is on
  the front the confirmation measured) and the metric change;
- hypervolume in (metric, latency / float32 latency) space against a shared reference
  (float32 metric minus the budget, 1.0), so studies of other samplers and seeds compare;
- the share of searched trials (not baselines, recipes or profile plans) that ended more
  than 5x over the budget, and the pruned trials' cost against a fine-tuned trial's: the
  worker's time (timings_s), and for a fine-tuned trial also with the devices' time
  measuring its file (measured_from to measured_until), which a pruned trial never spends.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGETS = {
    # name: (built-in task or None for a user model of user_models.py, trials); the metric
    # budget is the task's default (1 point of accuracy, 0.3 dB)
    "digits": ("digits", 50),
    "sr": ("sr", 60),
    "resnet20": (None, 50),
    "mobilenetv2": (None, 50),
}


def run(target: str, seed: int, sampler: str, results: str, workers: int) -> Path:
    task, trials = TARGETS[target]
    name = f"beat-{target}-{sampler}-s{seed}-{int(time.time())}"
    command = [sys.executable, "-m", "devicefit", "search"]
    if task:
        command += ["--task", task]
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from user_models import prepare

        model, data = prepare(target)
        command += ["--model", str(model), "--data", str(data), "--metric", "accuracy"]
    command += ["--trials", str(trials), "--seed", str(seed), "--sampler", sampler]
    command += ["--sensitivity", "--study", name, "--results", results]
    command += ["--workers", str(workers)]
    began = time.time()
    print("$", " ".join(["devicefit", *command[3:]]), flush=True)
    subprocess.run(command, check=True)
    print(f"wall time {(time.time() - began) / 60:.1f} min", flush=True)
    return Path(results) / name


def _total_s(trial: Any) -> float:
    """What the worker spent on a trial: building, scoring, fine-tuning, converting."""
    return float(sum((trial.metrics.get("timings_s") or {}).values()))


def _with_measurement_s(trial: Any) -> float:
    """The worker's time and the devices' time measuring the file (a pruned trial has
    none): what a trial that ran to the end cost the study."""
    spans = [
        m["measured_until"] - m["measured_from"]
        for m in (trial.metrics.get("latency") or {}).values()
        if m.get("measured_from") is not None and m.get("measured_until") is not None
    ]
    return _total_s(trial) + float(sum(spans))


def numbers(folder: Path) -> dict[str, Any]:
    from devicefit.results.hypervolume import study_hypervolume
    from devicefit.results.pareto import best_candidate, best_recipe, pareto_front
    from devicefit.results.records import load_study_record
    from devicefit.results.speedups import confirmed

    record = load_study_record(folder)
    front = pareto_front(record)
    best, peer = best_candidate(record, front), best_recipe(record)
    latency = record.latency_objectives[0]
    device = str(latency.device)
    f32 = next(t for t in record.trials if t.baseline == "float32" and t.complete)
    budget = float(record.max_metric_drop or 0.0)
    sign = 1.0 if record.metric.higher_is_better else -1.0
    ref_metric = f32.values[record.metric.name] - sign * budget
    f32_ms = f32.values[latency.name]
    hv = study_hypervolume(record, [-sign * ref_metric, f32_ms]) / f32_ms
    searched = [
        t
        for t in record.trials
        if t.state in ("COMPLETE", "PRUNED") and not (t.baseline or t.recipe or t.profile_plan)
    ]
    over = [
        t for t in searched if t.complete and (t.metrics or {}).get("metric_drop", 0.0) > 5 * budget
    ]
    pruned = [t for t in searched if t.state == "PRUNED"]
    tuned = [t for t in record.trials if t.complete and (t.metrics or {}).get("finetune")]
    paired = confirmed(record, best.number, device, "peer") if best else None
    # Against float32 too (the sr target is a speed-up over float32 SRCNN): the study's
    # confirmation times the float32 file in the same rounds.
    paired_f32 = confirmed(record, best.number, device, "float32") if best else None
    out = {
        "study": record.name,
        "device": device,
        "budget": budget,
        "float32": {"trial": f32.number, "ms": f32_ms},
        "best": _trial(best, record, latency.name, f32),
        "peer": _trial(peer, record, latency.name, f32),
        "vs_peer_stored": (peer.values[latency.name] / best.values[latency.name])
        if best and peer
        else None,
        "vs_peer_paired": paired.to_dict() if paired else None,
        "vs_float32_paired": paired_f32.to_dict() if paired_f32 else None,
        "hypervolume_normalised": hv,
        "searched": len(searched),
        "over_5x_budget": len(over),
        "over_5x_share": len(over) / len(searched) if searched else None,
        # The same share among the searched trials that completed (pruned ones left out).
        "over_5x_share_of_complete": len(over) / max(1, sum(t.complete for t in searched)),
        "pruned": len(pruned),
        "pruned_by_kind": _pruned_by_kind(pruned),
        "pruned_median_s": statistics.median(map(_total_s, pruned)) if pruned else None,
        "finetuned_median_s": statistics.median(map(_total_s, tuned)) if tuned else None,
        "finetuned_measured_median_s": statistics.median(map(_with_measurement_s, tuned))
        if tuned
        else None,
        "profile_plans": {
            t.profile_plan: _trial(t, record, latency.name, f32)
            for t in record.trials
            if t.profile_plan and t.complete
        },
    }
    return out


def _pruned_by_kind(pruned: list[Any]) -> dict[str, dict[str, float]]:
    """How many were pruned at each point (before fine-tuning, after an epoch, without
    fine-tuning) and their median cost."""
    kinds: dict[str, list[float]] = {}
    for trial in pruned:
        reason = str(trial.fail_reason or "")
        kind = reason.split(":", 1)[0].split(" of ")[0]  # "hopeless after epoch 1", ...
        kinds.setdefault(kind, []).append(_total_s(trial))
    return {
        kind: {"count": len(costs), "median_s": statistics.median(costs)}
        for kind, costs in sorted(kinds.items())
    }


def _trial(trial: Any, record: Any, objective: str, f32: Any) -> dict[str, Any] | None:
    if trial is None:
        return None
    return {
        "trial": trial.number,
        "plan": trial.plan_short,
        "ms": trial.values[objective],
        "vs_float32": f32.values[objective] / trial.values[objective],
        "metric_change": trial.values[record.metric.name] - f32.values[record.metric.name],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run")
    go.add_argument("target", choices=sorted(TARGETS))
    go.add_argument("--seed", type=int, default=0)
    go.add_argument("--sampler", default="tpe")
    go.add_argument("--workers", type=int, default=1)
    go.add_argument("--results", default="results/benchmarks")
    read = sub.add_parser("numbers")
    read.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    import json

    if args.command == "run":
        folders = [run(args.target, args.seed, args.sampler, args.results, args.workers)]
    else:
        folders = args.folders
    for folder in folders:
        print(json.dumps(numbers(folder), indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How repeatable a study's anchor is: one file (a float32 baseline's model.tflite) measured
the way the search measures its float32 baseline, several times in a row, printing each
process's median, their median and the fastest of them (search/reference_speed.py,
``anchored``).

    python benchmarks/anchor_probe.py RESULTS/STUDY/trials/0/model.tflite --times 4
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from devicefit.evaluators.base import BenchmarkSpec, RoundsSpec
from devicefit.evaluators.local import LocalEvaluator
from devicefit.search.reference_speed import anchored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tflite", type=Path)
    parser.add_argument("--times", type=int, default=4)
    parser.add_argument("--min-seconds", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=24)
    args = parser.parse_args()
    tflite = args.tflite.read_bytes()
    device = LocalEvaluator()
    for _ in range(args.times):
        own = device.measure(tflite, BenchmarkSpec(min_seconds=args.min_seconds))
        stored = anchored(device, tflite, own, RoundsSpec(rounds=args.rounds))
        medians = [round(ms, 3) for ms in stored.process_medians_ms or []]
        print(
            f"process medians {medians} -> median {statistics.median(medians):.3f}, "
            f"fastest {min(medians):.3f}, stored {stored.median_ms:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

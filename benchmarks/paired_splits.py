"""How many processes a candidate's paired rounds with its reference should be split among.

    python benchmarks/paired_splits.py STUDY_FOLDER --pair 0:3 --pair 2:14 --splits 3 6 8

For each pair (reference trial : candidate trial of a finished study), each split count:
eight pairings of 24 rounds (search/reference_speed.py ``at_reference_speed``, the path a
trial's measurement takes), and the largest over the smallest of their ratios. A process's
memory placement sets a file's speed for as long as it lives, so more processes average
more placements; each costs about 0.6 s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from machine import commit, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--pair", action="append", required=True, help="REFERENCE:CANDIDATE")
    parser.add_argument("--splits", type=int, nargs="+", default=[3, 6, 8])
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()

    import devicefit.search.reference_speed as paired
    from devicefit.evaluators.base import Measurement, RoundsSpec
    from devicefit.evaluators.local import LocalEvaluator

    device = LocalEvaluator()
    print(f"{machine()}, commit {commit()}")

    def tflite(number: str) -> bytes:
        return (args.study / "trials" / number / "model.tflite").read_bytes()

    for splits in args.splits:
        paired.SPLITS = splits
        for pair in args.pair:
            ref_number, candidate_number = pair.split(":")
            reference = paired.Reference(0, tflite(ref_number), {"local": 1.0})
            candidate = tflite(candidate_number)
            ratios, began = [], time.time()
            for _ in range(args.repeats):
                blank = Measurement(1.0, 1.0, 1.0, 0.0, 1, 1)
                spec = RoundsSpec(threads=1, rounds=args.rounds)
                done = paired.at_reference_speed(device, "local", candidate, blank, reference, spec)
                ratios.append(float(done.reference_ratio or 0.0))
            print(
                f"#{candidate_number} vs #{ref_number}, {splits} processes: "
                + " ".join(f"{r:.4f}" for r in ratios)
                + f"  max/min {max(ratios) / min(ratios):.4f}"
                + f"  {(time.time() - began) / args.repeats:.1f} s a pairing",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""What made a stored median 47% slow (issue 12: the digits int8 baseline at 0.449 ms, two
later measurements of the same file at 0.310 and 0.305 ms)?

    python benchmarks/outlier_cause.py --tflite STUDY/trials/2/model.tflite --study STUDY

Measures one file five times under each condition, through the child process a search
uses (devicefit.deploy.bench with the search's BenchmarkSpec):

- quiet, pinned: what the driver does now (nothing else of the search runs);
- quiet, not pinned: the measuring process free to move between cores;
- live report, not pinned: the driver's live report rendering in a thread of the parent
  process meanwhile (the search's first report is written right after the float32
  baseline is told: while the next baselines are measured) -- the situation before;
- live report, pinned: the same with the measuring process pinned to one core.

Prints each condition's medians and their spread.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
from pathlib import Path
from typing import Any

from rich.console import Console


def measure(tflite: bytes, pin: bool) -> float:
    from devicefit.evaluators.base import BenchmarkSpec
    from devicefit.evaluators.local import _run_bench

    spec = BenchmarkSpec()
    payload = {k: v for k, v in spec.to_dict().items() if k != "timeout_s"}
    return float(_run_bench([tflite], {**payload, "pin": pin}, spec.timeout_s, False)["median_ms"])


class Rendering:
    """The study's report rendered again and again in a thread of this process."""

    def __init__(self, study: Path) -> None:
        from devicefit.results import load_study_record

        self.record = load_study_record(study, None)
        self.stop = threading.Event()
        self.renders = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        from devicefit.results.report import write_report

        with tempfile.TemporaryDirectory() as folder:
            while not self.stop.is_set():
                write_report(self.record, Path(folder), live=True)
                self.renders += 1

    def __enter__(self) -> Rendering:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflite", type=Path, required=True)
    parser.add_argument("--study", type=Path, required=True, help="a study folder to render")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tflite = args.tflite.read_bytes()
    console = Console()
    results: dict[str, list[float]] = {}
    for name, pin, render in [
        ("quiet, pinned", True, False),
        ("quiet, not pinned", False, False),
        ("live report, not pinned", False, True),
        ("live report, pinned", True, True),
    ]:
        values = []
        for _ in range(args.repeats):
            if render:
                with Rendering(args.study) as rendering:
                    values.append(measure(tflite, pin))
                note = f" ({rendering.renders} renders during the last)"
            else:
                values.append(measure(tflite, pin))
                note = ""
        results[name] = values
        console.print(
            f"{name}: medians {', '.join(f'{v:.3f}' for v in values)} ms; "
            f"median {statistics.median(values):.3f}, max/min {max(values) / min(values):.3f}"
            + note,
            markup=False,
        )
    base = statistics.median(results["quiet, pinned"])
    for name, values in results.items():
        console.print(f"{name}: {statistics.median(values) / base:.2f}x the quiet pinned median")


if __name__ == "__main__":
    main()

"""The measuring process on 4 KiB pages against huge pages (deploy/bench.py, ``child_env``).

    python benchmarks/huge_pages.py                 # digits float32, 8 measurements each
    python benchmarks/huge_pages.py --task sr --repeats 12
    python benchmarks/huge_pages.py --after-search  # right after a 2-worker digits search

Measures the task's float32 file as a search does on ``local`` (a fresh child process per
measurement, pinned), alternating one started with glibc's malloc on 4 KiB pages
(``glibc.malloc.hugetlb=0``) and one as devices start it (huge pages), so the host's drift
hits both alike. ``--after-search`` first runs the search of
tests/test_end_to_end.py::test_two_workers_do_not_disturb_latency (5 digits trials on two
workers), the state in which a standalone measurement used to come out slower. Prints each
measurement, then per setting the medians' spread (max/min), CV and the huge pages the
process held, and a Markdown row for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from machine import commit, machine

from devicefit.quiet import silence_tensorflow

silence_tensorflow()


def _measure(path: Path, spec: dict, huge: bool) -> dict:
    from devicefit.deploy.bench import child_env

    env = child_env()
    if not huge:
        env["GLIBC_TUNABLES"] = env["GLIBC_TUNABLES"].replace("hugetlb=1", "hugetlb=0")
    run = subprocess.run(
        [sys.executable, "-m", "devicefit.deploy.bench", str(path), json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def _search(folder: Path) -> None:
    config = folder / "study.toml"
    config.write_text(
        'task = "digits"\nseed = 0\nmin_runs = 20\nmin_seconds = 1.5\nconfirm_rounds = 6\n'
        "[ranges.finetune]\nepochs = [0, 1]\n"
    )
    command = ["search", "--config", str(config), "--trials", "5", "--workers", "2"]
    command += ["--study", "w2", "--results", str(folder)]
    subprocess.run([sys.executable, "-m", "devicefit", *command], capture_output=True, check=True)
    print("after a 5-trial digits search on 2 workers", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="digits")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--min-seconds", type=float, default=1.5)
    parser.add_argument("--after-search", action="store_true")
    args = parser.parse_args()

    from devicefit.evaluators.base import BenchmarkSpec
    from devicefit.spaces.convert import to_tflite
    from devicefit.tasks import TaskSpec, load_task

    task = load_task(TaskSpec(args.task))
    spec = {k: v for k, v in BenchmarkSpec(min_seconds=args.min_seconds).to_dict().items()}
    spec.pop("timeout_s")
    settings: dict[str, list[dict]] = {"4 KiB pages": [], "huge pages": []}
    print(f"machine: {machine()}; date {date.today()}; commit {commit()}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(to_tflite(task.model, task.input_shape))
        if args.after_search:
            _search(Path(folder))
        for n in range(args.repeats):
            for name, results in settings.items():
                r = _measure(path, spec, huge=name == "huge pages")
                results.append(r)
                loads = ", ".join(f"{m:.3f}" for m in r["placement_medians_ms"])
                print(
                    f"{n:3d} {name:11s}: median {r['median_ms']:.3f} ms, min {r['min_ms']:.3f}, "
                    f"loads [{loads}], steal {r['steal_pct']}%, "
                    f"in huge pages {r.get('huge_pages_mb')} MB",
                    flush=True,
                )
    print("| task | pages | measurements | median of medians (ms) | max/min | CV | in huge pages |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, results in settings.items():
        medians = [r["median_ms"] for r in results]
        huge = statistics.median(r.get("huge_pages_mb") or 0.0 for r in results)
        print(
            f"| {args.task} float32 | {name} | {len(medians)} | {statistics.median(medians):.3f} "
            f"| {max(medians) / min(medians):.3f} "
            f"| {statistics.stdev(medians) / statistics.mean(medians):.1%} | {huge:.0f} MB |"
        )


if __name__ == "__main__":
    main()

"""Throughput benchmark: complete trials per hour on the digits task, by executor.

    python benchmarks/throughput.py                # local pool and Ray, 1 and 2 workers
    python benchmarks/throughput.py --trials 16 --ray 10.0.0.5:6379   # an existing cluster

Each configuration runs the real CLI on the same fast study (channel pruning and
quantization, 0-1 fine-tuning epochs, seed 0) into its own results folder, then
reads the study: trials per hour counts complete trials over the wall time of
the whole command (task loading and the float32 baseline, which runs alone,
included). Without --ray the script starts a one-node Ray cluster on loopback
with the machine's CPUs and stops it afterwards. Prints Markdown rows for
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

STUDY = """
task = "digits"
seed = 0
min_runs = 20
min_seconds = 0.3
confirm_rounds = 6  # paired rounds at the end: enough for an interval
techniques = ["channel_pruning", "quantization"]
[ranges.finetune]
epochs = [0, 1]
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_ray() -> tuple[str, Path]:
    ray = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    subprocess.run(
        [ray, "start", "--head", f"--port={port}", f"--temp-dir={temp}"]
        + ["--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"],
        check=True,
        capture_output=True,
    )
    return f"127.0.0.1:{port}", temp


def stop_ray(address: str, temp: Path) -> None:
    import psutil

    port = address.rsplit(":", 1)[1]
    marks = (f"127.0.0.1:{port}", f"={port}", str(temp))
    doomed = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.pid != os.getpid() and any(mark in cmdline for mark in marks):
            doomed += [process, *process.children(recursive=True)]
    for process in doomed:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    shutil.rmtree(temp, ignore_errors=True)


def run(folder: Path, name: str, trials: int, workers: int, ray: str | None) -> tuple[float, int]:
    import optuna
    from optuna.trial import TrialState

    config = folder / "study.toml"
    config.write_text(STUDY)
    command = [sys.executable, "-m", "devicefit", "search", "--config", str(config)]
    command += ["--trials", str(trials), "--workers", str(workers), "--study", name]
    command += ["--results", str(folder)] + (["--ray", ray] if ray else [])
    began = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    minutes = (time.time() - began) / 60
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / name / 'study.db'}")
    return minutes, len(study.get_trials(states=(TrialState.COMPLETE,)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--ray", help="an existing cluster's address (default: start one)")
    parser.add_argument("--results", default="results/throughput")
    args = parser.parse_args()
    folder = Path(args.results) / str(int(time.time()))
    folder.mkdir(parents=True)
    address, temp = (args.ray, None) if args.ray else start_ray()
    rows = []
    try:
        for executor, workers in (("pool", 1), ("pool", 2), ("ray", 1), ("ray", 2)):
            name = f"{executor}-{workers}"
            minutes, complete = run(
                folder, name, args.trials, workers, address if executor == "ray" else None
            )
            rows.append((executor, workers, minutes, complete))
    finally:
        if temp is not None:
            stop_ray(address, temp)
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    for executor, workers, minutes, complete in rows:
        label = "local process pool" if executor == "pool" else "Ray (one local node)"
        print(
            f"| {date.today()} | {machine} | {label} | {workers} | {complete} | "
            f"{minutes:.1f} min | {complete / minutes * 60:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

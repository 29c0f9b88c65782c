"""The same seeded study gives the same trials whichever executor runs them: the local process
pool and a real Ray cluster on loopback build the same plans, and fine-tuning, conversion and
scoring give the same metrics and the same TFLite files.

Training is bitwise reproducible at a fixed thread count (seeded weights, shuffling and
dropout; one summation order), so both runs train each trial on one CPU
(``--cpus-per-trial 1``). The study stays within TPE's random start (8 complete trials): past
it the sampler reads the measured latencies, which no two runs share, so later plans differ
between any two runs, on one executor as on two.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from studies import FAST_DIGITS

from devicefit.search import attrs

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

TRIALS = 8  # the TPE sampler's random start (n_startup_trials), fixed trials included
# A budget no candidate can be hopeless against: a pruned trial would not count toward the
# eight, and the ninth would be the sampler's first read of the measured latencies.
NEVER_HOPELESS = FAST_DIGITS.replace('task = "digits"', 'task = "digits"\nmax_metric_drop = 100.0')


def _study(tmp_path: Path, name: str, workers: int, *flags: str) -> dict[int, dict[str, Any]]:
    config = tmp_path / "study.toml"
    config.write_text(NEVER_HOPELESS)
    run = subprocess.run(
        [sys.executable, "-m", "devicefit", "search", "--config", str(config), "--study", name]
        + ["--results", str(tmp_path), "--trials", str(TRIALS), "--seed", "0"]
        + ["--workers", str(workers), "--cpus-per-trial", "1", *flags],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    folder = tmp_path / name
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / attrs.DB_FILE}")
    trials = {}
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        tflite = (folder / attrs.TRIALS_DIR / str(trial.number) / "model.tflite").read_bytes()
        trials[trial.number] = {
            "plan": trial.user_attrs[attrs.PLAN],
            "metrics": trial.user_attrs[attrs.METRICS],
            "metric_value": trial.values[0],
            "tflite_sha256": hashlib.sha256(tflite).hexdigest(),
        }
    return trials


def test_local_pool_and_ray_run_the_same_study(tmp_path: Path, ray_cluster: Any) -> None:
    address, _ = ray_cluster
    # One pool worker would train on both cores by default: the flag must hold it to one.
    # Two Ray workers: trials finish in another order, which must not change them.
    pool = _study(tmp_path, "on-pool", 1)
    ray = _study(tmp_path, "on-ray", 2, "--ray", address)

    assert sorted(pool) == sorted(ray) == list(range(TRIALS))
    tuned = [n for n in pool if pool[n]["plan"]["finetune_epochs"] > 0]
    assert tuned, "no trial fine-tuned: the study would not show training is reproducible"
    for number in range(TRIALS):
        local, remote = pool[number], ray[number]
        assert remote["plan"] == local["plan"], number
        assert remote["metric_value"] == pytest.approx(local["metric_value"], abs=1e-9), number
        assert remote["metrics"]["metric"] == pytest.approx(local["metrics"]["metric"], abs=1e-9), (
            number
        )
        for key in ("size_bytes", "macs", "params"):
            assert remote["metrics"][key] == local["metrics"][key], (number, key)
        assert remote["tflite_sha256"] == local["tflite_sha256"], number
        assert remote["metrics"]["built_on"] and not local["metrics"].get("built_on")

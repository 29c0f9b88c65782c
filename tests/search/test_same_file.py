"""One file, one candidate: a repeated plan is not built again, a file already made is not
scored again, and every measurement of a file is pooled into the value the study is told."""

from __future__ import annotations

import hashlib
import statistics
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from devicefit.results.pareto import best_candidate, pareto_front
from devicefit.results.records import load_study_record
from devicefit.results.table import recipe_line
from devicefit.search import attrs
from devicefit.search.reference_speed import family
from devicefit.search.trial import TrialRequest, run_trial
from devicefit.spaces.space import baseline_plan
from devicefit.tasks.base import TaskSpec

# Quantization modes only, no fine-tuning: four possible files, so a 20-trial study
# repeats them; the sampler still proposes plans as in any study.
REPEATING = """
task = "digits"
seed = 0
min_runs = 20
min_seconds = 0.3
max_seconds = 0.6  # timing stops here when the interval is still wider than +-2%
confirm_rounds = 6
paired_rounds = 4  # with the reference file, per candidate: one process
techniques = ["quantization"]
[ranges.finetune]
epochs = [0, 0]
"""


def test_a_candidate_converting_to_a_known_file_is_not_scored_again() -> None:
    plan = baseline_plan("float16").to_dict()
    first = run_trial(TrialRequest(0, plan, TaskSpec("digits"), seed=0))
    assert first.error is None and first.tflite_sha256
    assert first.tflite_sha256 == hashlib.sha256(first.tflite).hexdigest()
    again = run_trial(
        TrialRequest(
            1, plan, TaskSpec("digits"), seed=0, known_files=frozenset({first.tflite_sha256})
        )
    )
    assert again.error is None and again.known_file
    assert again.tflite == first.tflite
    assert "evaluate" not in again.timings_s  # the driver takes the first trial's scores


@pytest.mark.slow
def test_a_20_trial_study_measures_identical_files_as_one_candidate(tmp_path: Path) -> None:
    config = tmp_path / "study.toml"
    config.write_text(REPEATING)
    run = subprocess.run(
        [sys.executable, "-m", "devicefit", "search", "--config", str(config)]
        + ["--trials", "20", "--study", "same", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    folder = tmp_path / "same"
    study = optuna.load_study(study_name="same", storage=f"sqlite:///{folder / attrs.DB_FILE}")
    complete = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    assert len(complete) == 20
    groups: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in complete:
        groups.setdefault(trial.user_attrs[attrs.METRICS]["tflite_sha256"], []).append(trial)
    assert len(groups) <= 4 and max(map(len, groups.values())) >= 3
    for members in groups.values():
        first, medians = members[0], []
        for trial in members:
            metrics = trial.user_attrs[attrs.METRICS]
            medians.append(metrics["latency"]["local"]["median_ms"])  # its own measurement
            if trial is first:
                assert attrs.SAME_AS not in trial.user_attrs
                continue
            assert trial.user_attrs[attrs.SAME_AS] == first.number
            assert metrics["metric"] == first.user_attrs[attrs.METRICS]["metric"]
            assert "build" not in metrics["timings_s"]  # the same plan: nothing built again
            # told the median of every measurement of the file so far
            assert trial.values[1] == pytest.approx(statistics.median(medians))
            assert metrics["pooled"]["local"]["measurements"] == len(medians)
    _assert_paired_with_their_references(folder, complete)
    record = load_study_record(folder)
    front = pareto_front(record)
    shas = [t.metrics["tflite_sha256"] for t in front]
    assert len(shas) == len(set(shas))  # one point per file
    pick = best_candidate(record, front)
    assert pick is not None and pick.same_as is None
    if pick.baseline:  # a baseline's file, however often the sampler proposed it again
        assert recipe_line(record, front).startswith("No faster than")


def _assert_paired_with_their_references(
    folder: Path, complete: list[optuna.trial.FrozenTrial]
) -> None:
    """Every latency after the float32 baseline's is its reference's stored latency times the
    ratio from paired rounds on the real device; int8 files after the int8 baseline are paired
    with it, the int8 baseline and the others with float32 (search/reference_speed.py)."""
    baselines = {t.user_attrs.get(attrs.BASELINE): t for t in complete}
    f32, i8 = baselines["float32"], baselines["int8"]

    def local(trial: optuna.trial.FrozenTrial) -> dict:
        return trial.user_attrs[attrs.METRICS]["latency"]["local"]

    anchor = local(f32)  # the fastest of its own measurement and six more processes
    assert anchor["reference_trial"] is None and len(anchor["process_medians_ms"]) == 7
    assert anchor["median_ms"] == pytest.approx(min(anchor["process_medians_ms"]))
    kinds = set()
    for trial in complete:
        if trial is f32:
            continue
        tflite = (folder / attrs.TRIALS_DIR / str(trial.number) / "model.tflite").read_bytes()
        kinds.add(family(tflite))
        reference = i8 if family(tflite) == "int8" and trial is not i8 else f32
        measured = local(trial)
        assert measured["reference_trial"] == reference.number, trial.number
        assert measured["paired_rounds"] == 4
        assert measured["median_ms"] == pytest.approx(
            local(reference)["median_ms"] * measured["reference_ratio"]
        )
        assert measured["median_low_ms"] <= measured["median_ms"] <= measured["median_high_ms"]
        assert measured["raw_median_ms"] > 0
    assert kinds == {"float32", "int8"}

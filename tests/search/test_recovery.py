"""A dead driver's RUNNING trials are failed and re-enqueued exactly once, same params."""

from pathlib import Path

import optuna
from optuna.trial import TrialState

from devicefit.search import attrs
from devicefit.search.study import recover_interrupted


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'study.db'}", directions=["maximize", "minimize"]
    )


def test_running_trial_is_failed_and_requeued_once(tmp_path: Path) -> None:
    study = _study(tmp_path)
    done = study.ask()
    done.suggest_float("lowrank.rank_ratio", 0.1, 1.0)
    study.tell(done, [1.0, 1.0])
    dead = study.ask()
    ratio = dead.suggest_float("lowrank.rank_ratio", 0.1, 1.0)
    on = dead.suggest_categorical("lowrank.on", [False, True])

    assert recover_interrupted(study, "driver died") == [dead.number]
    # A second recovery (driver killed again right after) adds no second copy.
    assert recover_interrupted(study, "driver died") == []

    trials = study.get_trials(deepcopy=False)
    failed = trials[dead.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs[attrs.FAIL_REASON] == "driver died"
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].user_attrs[attrs.RETRY_OF] == dead.number

    rerun = study.ask()
    assert rerun.suggest_float("lowrank.rank_ratio", 0.1, 1.0) == ratio
    assert rerun.suggest_categorical("lowrank.on", [False, True]) == on
    assert study.get_trials()[done.number].values == [1.0, 1.0]  # untouched


def test_baseline_marker_survives_the_retry(tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.enqueue_trial({}, user_attrs={attrs.BASELINE: "int8"})
    study.ask()
    recover_interrupted(study, "x")
    rerun = study.ask()
    assert rerun.user_attrs[attrs.BASELINE] == "int8"


def test_fixed_trials_come_one_at_a_time_and_reruns_go_first(tmp_path: Path) -> None:
    from devicefit.search.study import enqueue_next_fixed, set_study_info

    study = _study(tmp_path)
    study.set_user_attr(attrs.STUDY_KEY, {})
    fixed = [{"attrs": {attrs.BASELINE: m}, "params": {}} for m in ("float32", "int8")]
    fixed.append({"attrs": {attrs.RECIPE: "lowrank"}, "params": {"lowrank.on": True}})
    set_study_info(study, fixed_trials=fixed)

    assert enqueue_next_fixed(study)
    first = study.ask()
    assert first.user_attrs[attrs.BASELINE] == "float32"
    study.tell(first, [1.0, 1.0])
    assert enqueue_next_fixed(study)
    interrupted = study.ask()  # int8 baseline, then the driver dies
    recover_interrupted(study, "driver died")
    # The re-run is asked before any further fixed trial is even enqueued.
    rerun = study.ask()
    assert rerun.user_attrs == {attrs.RETRY_OF: interrupted.number, attrs.BASELINE: "int8"}
    study.tell(rerun, [1.0, 1.0])
    assert enqueue_next_fixed(study)  # the recipe: int8 already exists (failed, re-run)
    recipe = study.ask()
    assert recipe.user_attrs[attrs.RECIPE] == "lowrank"
    assert recipe.suggest_categorical("lowrank.on", [False, True]) is True
    study.tell(recipe, [1.0, 1.0])
    assert not enqueue_next_fixed(study)  # all fixed trials exist: none twice

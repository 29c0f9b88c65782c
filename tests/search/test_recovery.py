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

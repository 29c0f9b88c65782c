import json

import optuna
import pytest

from devicefit.errors import UsageError
from devicefit.results.records import load_study_record
from devicefit.search import attrs


def test_load_reads_study_and_trials(make_study):
    fake = make_study()
    base = fake.add(97.0, 4.0, baseline="float32")
    good = fake.add(96.5, 1.0)
    bad = fake.add(90.0, 0.5)  # drop 7 > 1: infeasible
    failed = fake.fail("out of memory")

    rec = load_study_record(fake.folder)

    assert rec.name == "s1"
    assert rec.storage == f"sqlite:///{(fake.folder / 'study.db').resolve()}"
    assert [(o.name, o.direction, o.unit, o.device) for o in rec.objectives] == [
        ("accuracy", "maximize", "%", None),
        ("latency_local", "minimize", "ms", "local"),
    ]
    assert rec.metric.name == "accuracy" and rec.metric.higher_is_better and rec.metric.unit == "%"
    assert rec.reference_metric == 97.0 and rec.max_metric_drop == 1.0
    assert rec.task == "digits" and "local" in rec.devices and rec.config == {"trials": 10}
    assert [t.number for t in rec.trials] == [base, good, bad, failed]

    t = rec.trial(good)
    assert t.state == "COMPLETE" and t.values == {"accuracy": 96.5, "latency_local": 1.0}
    assert t.plan["steps"][0]["technique"] == "lowrank"
    assert t.plan_short.startswith("lowrank(rank=0.5)")
    assert t.metrics["size_bytes"] == 40_000 and t.latency("local")["median_ms"] == 1.0
    assert t.feasible and t.constraints == {attrs.CONSTRAINT: pytest.approx(0.5 - 1.0)}
    assert t.datetime_start is not None and t.datetime_complete is not None
    assert rec.trial(base).baseline == "float32"
    assert not rec.trial(bad).feasible
    f = rec.trial(failed)
    assert f.state == "FAIL" and f.fail_reason == "out of memory" and f.values == {}


def test_constraint_set_through_ask_tell_is_read(make_study):
    # The search driver uses trial.set_constraint; Optuna 5 stores it as "constraints:<key>".
    fake = make_study()
    for drop in (0.2, 3.0):
        trial = fake.study.ask()
        trial.set_user_attr(attrs.METRICS, {"metric": 97.0 - drop})
        trial.set_constraint(attrs.CONSTRAINT, drop - 1.0)
        fake.study.tell(trial, [97.0 - drop, 1.0])
        stored = fake.study.trials[-1].system_attrs
        assert f"constraints:{attrs.CONSTRAINT}" in stored
    running = fake.study.ask()  # a trial a dead driver left behind
    running.set_user_attr(attrs.RETRY_OF, 0)
    rec = load_study_record(fake.folder)
    assert [t.feasible for t in rec.trials[:2]] == [True, False]
    assert rec.trials[2].state == "RUNNING" and rec.trials[2].retry_of == 0
    assert rec.trials[2].values == {} and not rec.trials[2].complete


def test_storage_from_study_json_and_override(make_study, tmp_path):
    fake = make_study()
    fake.add(97.0, 4.0, baseline="float32")
    moved = tmp_path / "elsewhere.db"
    (fake.folder / "study.db").rename(moved)
    url = f"sqlite:///{moved}"
    info = json.loads((fake.folder / "study.json").read_text())

    assert len(load_study_record(fake.folder, storage=url).trials) == 1
    (fake.folder / "study.json").write_text(json.dumps({**info, "storage": url}))
    assert load_study_record(fake.folder).storage == url


def test_not_a_results_folder(tmp_path):
    with pytest.raises(UsageError, match=r"x: not a devicefit results folder \(no study.json\)"):
        load_study_record(tmp_path / "results" / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no study.json"):
        load_study_record(tmp_path / "empty")


def test_bad_study_json_and_missing_db(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "study.json").write_text("{not json")
    with pytest.raises(UsageError, match="study.json: unreadable"):
        load_study_record(folder)
    (folder / "study.json").write_text(json.dumps({"study_name": "s", "storage": None}))
    with pytest.raises(UsageError, match="study.db is missing"):
        load_study_record(folder)
    assert not (folder / "study.db").exists()  # we must not create an empty database


def test_unknown_study_name_and_plain_optuna_study(make_study):
    fake = make_study()
    info = json.loads((fake.folder / "study.json").read_text())
    (fake.folder / "study.json").write_text(json.dumps({**info, "study_name": "nope"}))
    with pytest.raises(UsageError, match="study 'nope' not found"):
        load_study_record(fake.folder)

    optuna.create_study(study_name="plain", storage=f"sqlite:///{fake.folder / 'study.db'}")
    (fake.folder / "study.json").write_text(json.dumps({**info, "study_name": "plain"}))
    with pytest.raises(UsageError, match="no devicefit attributes"):
        load_study_record(fake.folder)

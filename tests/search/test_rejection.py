"""Hopeless candidates are pruned before fine-tuning, after an epoch, or before conversion
when they do not fine-tune, from what fine-tuning has recovered in the study so far; the
rest fine-tune and record what they recovered.

The trial tests build real candidates of the digits task. The driver test uses an executor
double (candidates with made-up drops): what it checks is the driver's bookkeeping beside it.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
from pathlib import Path

import keras
import pytest
from optuna.trial import TrialState
from rich.console import Console

from devicefit.config import StudyConfig
from devicefit.evaluators.metrics import get_metric
from devicefit.search import attrs
from devicefit.search.candidates import MAX_PRUNED_PER_TRIAL
from devicefit.search.driver import Driver
from devicefit.search.executors import Executor
from devicefit.search.rejection import (
    MARGIN,
    MIN_RECOVERIES,
    SHARE_CAP,
    UNRECOVERED_MARGIN,
    Recovery,
    epoch_limits,
    learned_from,
    reached,
    recoveries_within,
    rejection_limit,
    validation_drop,
)
from devicefit.search.run import build_space
from devicefit.search.study import FIXED_KEYS, create_study
from devicefit.search.trial import TrialOutput, TrialRequest, run_trial
from devicefit.spaces import get_technique
from devicefit.spaces.base import Plan, Step
from devicefit.spaces.batchnorm_stats import recalibrate_batchnorm
from devicefit.tasks import load_task
from devicefit.tasks.base import TaskSpec


def test_the_limit_follows_the_largest_recovery() -> None:
    assert rejection_limit(1.0, [(9.0, 4.0)] * (MIN_RECOVERIES - 1)) is None  # too few seen
    # The most recovered in points: 7 (from 30 to 23; a share of only 0.23).
    assert rejection_limit(1.0, [(3.0, 1.0), (30.0, 23.0), (0.5, 0.6)]) == MARGIN * (1.0 + 7.0)
    # The largest share recovered: 90% of 5 points; a drop of 10 would keep 1 after it.
    limit = rejection_limit(1.0, [(5.0, 0.5), (2.0, 1.5), (0.2, 0.1)])
    assert limit == pytest.approx(MARGIN * 1.0 / 0.1)
    # Fine-tuning that won nothing back: never below the budget.
    assert rejection_limit(1.0, [(2.0, 2.5), (1.0, 1.0), (3.0, 3.0)]) == MARGIN * 1.0
    # All of it recovered: counted on for at most SHARE_CAP of a drop.
    limit = rejection_limit(1.0, [(9.0, 0.0)] * 3)
    assert limit == pytest.approx(MARGIN * 1.0 / (1.0 - SHARE_CAP))


def test_no_reading_counts_on_more_than_the_share_cap() -> None:
    # A plan came back 88.5 points from chance: a candidate at chance is not worth
    # fine-tuning on that alone (most stay there); the limit is where keeping only
    # 1 - SHARE_CAP of the drop would end within the budget, twice over.
    limit = rejection_limit(1.0, [(89.0, 0.5), (3.0, 1.0), (2.0, 0.5)])
    assert limit == pytest.approx(MARGIN * 1.0 / (1.0 - SHARE_CAP))
    assert limit < 89.0
    # With no loss allowed there is no share to keep: the points reading alone.
    assert rejection_limit(0.0, [(89.0, 0.5), (3.0, 1.0), (2.0, 0.5)]) == MARGIN * 88.5


def record(before: float, drops: tuple[float, ...], after: float, planned: int) -> Recovery:
    return Recovery(before, after, drops, planned, len(drops))


def test_a_candidate_counts_on_what_as_many_epochs_recovered() -> None:
    records = [
        record(30.0, (20.0, 5.0, 1.0), 0.5, 3),
        record(8.0, (6.0, 3.0), 2.0, 2),
        Recovery(9.0, 1.0, (), 3, 3),  # an older record without its drops: its end
    ]
    # One epoch: 10 points from 30, 2 from 8.
    assert recoveries_within(records, 1) == [(30.0, 20.0), (8.0, 6.0), (9.0, 1.0)]
    assert rejection_limit(1.0, recoveries_within(records, 1)) == MARGIN * (1.0 + 10.0)
    # Three epochs and more: each trial's end.
    assert recoveries_within(records, 3) == [(30.0, 0.5), (8.0, 2.0), (9.0, 1.0)]
    assert recoveries_within(records, 7) == recoveries_within(records, 3)
    # The weights kept are the best so far, those before fine-tuning included.
    assert reached(record(4.0, (9.0, 2.0), 2.0, 2), 1) == 4.0
    assert reached(record(4.0, (9.0, 2.0), 2.0, 2), 0) == 4.0
    # Extra epochs count toward the run: a 3-epoch trial with 4 extra is a 7-epoch one.
    longer = Recovery(30.0, 0.5, (20.0, 5.0, 3.0), 3, 7)
    assert reached(longer, 3) == 3.0 and reached(longer, 7) == 0.5


def test_the_limit_after_an_epoch_follows_what_the_later_epochs_recovered() -> None:
    records = [
        record(12.0, (10.0, 5.0, 3.0), 3.0, 3),  # 7 recovered after epoch 1, 2 after epoch 2
        record(15.0, (14.0, 6.0), 4.0, 3),  # 10 after epoch 1; stopped early after two
        record(5.0, (4.0,), 0.5, 1),  # one epoch: says nothing about what more recover
        record(9.0, (8.0, 3.0, 3.0), 3.0, 3),
        record(70.0, (60.0, 1.0), 0.5, 2),  # two epochs planned: fewer left than 3 have
    ]
    after_first = [(10.0, 3.0), (14.0, 4.0), (8.0, 3.0)]
    # After epoch 2 only two trials ran on (MIN_RECOVERIES is 3): no limit there.
    assert epoch_limits(1.0, records, 3) == (rejection_limit(1.0, after_first), None)
    assert rejection_limit(1.0, after_first) == MARGIN * (1.0 + 10.0)
    # A 2-epoch plan learns from every trial planned for two epochs or more, from what
    # their second epoch recovered (5 from 10 for the first one, not 7).
    after_first = [(10.0, 5.0), (14.0, 4.0), (8.0, 3.0), (60.0, 0.5)]
    assert epoch_limits(1.0, records, 2) == (rejection_limit(1.0, after_first),)
    # 59.5 points from 60: counted on for SHARE_CAP of a drop.
    assert rejection_limit(1.0, after_first) == pytest.approx(MARGIN * 1.0 / (1.0 - SHARE_CAP))
    # The best drop so far counts, not the last: (9, 12) after two epochs is at 9.
    limits = epoch_limits(1.0, [record(10.0, (9.0, 12.0, 1.0), 1.0, 3)] * 3, 3)
    assert limits[1] == rejection_limit(1.0, [(9.0, 1.0)] * 3)
    assert epoch_limits(1.0, records, 1) == ()  # one epoch: nothing after it


def test_a_record_teaches_only_where_its_drop_before_was_the_candidates() -> None:
    tuned = {
        "drop_before": 9.0,
        "drop_after": 1.0,
        "drops": [4.0, 1.0],
        "epochs": 3,
        "epochs_run": 2,
        "epochs_extra_run": 3,
    }
    assert learned_from(tuned) == Recovery(9.0, 1.0, (4.0, 1.0), 3, 5)
    # A weights technique's masks made during fine-tuning, not applied to score it before
    # (gradual magnitude pruning; or a study from before they were).
    assert learned_from({**tuned, "weights": True}) is None
    assert learned_from({**tuned, "weights": True, "one_shot": False}) is None
    assert learned_from({**tuned, "weights": True, "one_shot": True}) == learned_from(tuned)
    assert learned_from({"drop_before": 9.0, "drop_after": 1.0}) == Recovery(9.0, 1.0, (), 0, 0)
    assert learned_from({"drop_before": 9.0}) is None  # pruned: no end


PRUNED_HARD = Plan(
    (
        Step("channel_pruning", {"ratio": 0.9, "importance": "l1"}),
        Step("quantization", {"mode": "float32"}),
    ),
    finetune_epochs=2,
).to_dict()


def test_a_hopeless_candidate_stops_before_fine_tuning() -> None:
    out = run_trial(TrialRequest(0, PRUNED_HARD, TaskSpec("digits"), seed=0, reject_drop=1.0))
    assert out.error is None
    assert out.rejected and "hopeless before fine-tuning" in out.rejected
    assert out.finetune["drop_before"] > 1.0
    assert "finetune" not in out.timings_s and out.tflite == b""  # nothing trained or made
    assert out.timings_s["score_before_finetune"] < 10


def test_a_candidate_hopeless_after_its_first_epoch_stops_there() -> None:
    plan = {**PRUNED_HARD, "finetune_epochs": 3}
    # No limit after epoch 1; after epoch 2, one no candidate with 90% of its channels
    # gone is within.
    request = TrialRequest(0, plan, TaskSpec("digits"), seed=0, reject_after_epoch=(None, 0.0))
    out = run_trial(request)
    assert out.error is None and out.tflite == b""
    assert out.rejected and out.rejected.startswith("hopeless after epoch 2 of 3")
    assert out.finetune["epochs_run"] == 2 and len(out.finetune["drops"]) == 2
    assert min(out.finetune["drops"]) > 0.0  # its best so far, over the limit
    assert "finetune" in out.timings_s and "convert" not in out.timings_s


def test_a_plan_that_does_not_fine_tune_is_pruned_before_conversion() -> None:
    plan = {**PRUNED_HARD, "finetune_epochs": 0}
    out = run_trial(TrialRequest(0, plan, TaskSpec("digits"), seed=0, reject_unrecovered=2.0))
    assert out.error is None and out.tflite == b""
    assert out.rejected and out.rejected.startswith("hopeless without fine-tuning")
    assert out.finetune["drop_before"] > 2.0 and out.finetune["epochs_planned"] == 0
    assert "score_before_convert" in out.timings_s and "convert" not in out.timings_s
    # The same plan within the limit is converted and scored as before.
    kept = run_trial(TrialRequest(0, plan, TaskSpec("digits"), seed=0, reject_unrecovered=1e9))
    assert kept.error is None and kept.rejected is None and kept.tflite


def test_a_weights_technique_is_scored_as_fine_tuning_will_start() -> None:
    plan = Plan(
        (Step("clustering", {"bits": 1}), Step("quantization", {"mode": "float32"})),
        finetune_epochs=2,
    ).to_dict()
    out = run_trial(TrialRequest(0, plan, TaskSpec("digits"), seed=0, reject_drop=1.0))
    # Two shared values per kernel cost far more than a point before any fine-tuning; the
    # model before clustering (what was scored before) costs nothing.
    assert out.rejected and out.rejected.startswith("hopeless before fine-tuning")
    assert out.finetune["drop_before"] > 1.0 and out.finetune["one_shot"] is True
    # Gradual magnitude pruning starts from the model without its masks: at 95% it would
    # cost far more than a point at once, but fine-tuning ramps it up from nothing.
    gradual = Plan(
        (
            Step("magnitude_pruning", {"sparsity": 0.95, "pattern": "unstructured"}),
            Step("quantization", {"mode": "float32"}),
        ),
        finetune_epochs=1,
    ).to_dict()
    out = run_trial(TrialRequest(0, gradual, TaskSpec("digits"), seed=0, reject_drop=1.0))
    assert out.rejected is None and out.tflite
    assert out.finetune["drop_before"] == 0.0 and out.finetune["one_shot"] is False


def test_a_rewritten_candidate_is_scored_with_its_batchnorm_statistics_re_estimated() -> None:
    cut = Plan(
        (Step("channel_pruning", {"ratio": 0.5}), Step("quantization", {"mode": "float32"})),
        finetune_epochs=0,
    ).to_dict()
    out = run_trial(TrialRequest(0, cut, TaskSpec("digits"), seed=0, reject_unrecovered=0.0))
    notes = [n for n in out.notes if n.startswith("batchnorm:")]
    assert out.error is None and notes and "128 training inputs" in notes[0], out.notes
    # Its drop is that of the cut model with re-estimated statistics, not the stale ones.
    task = load_task(TaskSpec("digits"))
    tech = get_technique("channel_pruning")
    tech.prepare(task.calibration)
    params = {"ratio": 0.5}  # as the plan gives it
    stale = validation_drop(tech.rewrite(task.model, params).model, task)
    fresh_model = tech.rewrite(task.model, params).model
    recalibrate_batchnorm(fresh_model, task.calibration, task.model)
    fresh = validation_drop(fresh_model, task)
    assert out.finetune["drop_before"] == pytest.approx(fresh, abs=1e-6)
    assert fresh != pytest.approx(stale, abs=1e-6)
    # The identity settings rewrite nothing: the model keeps its own statistics.
    same = Plan(
        (Step("channel_pruning", {"ratio": 0.0}), Step("quantization", {"mode": "float32"})),
        finetune_epochs=0,
    ).to_dict()
    out = run_trial(TrialRequest(0, same, TaskSpec("digits"), seed=0))
    assert out.error is None and not [n for n in out.notes if n.startswith("batchnorm:")]


def test_a_fine_tuned_candidate_records_what_fine_tuning_recovered(tmp_path: Path) -> None:
    out = run_trial(TrialRequest(0, PRUNED_HARD, TaskSpec("digits"), seed=0))
    assert out.error is None and out.rejected is None and out.tflite
    tuned = out.finetune
    assert tuned["drop_before"] > 1.0  # 90% of the channels gone, not yet retrained
    assert tuned["recovered"] == tuned["drop_before"] - tuned["drop_after"]
    assert tuned["recovered"] > 0
    assert tuned["macs_removed"] > 0.5  # most of the MACs gone with 90% of the channels
    assert tuned["epochs"] == tuned["epochs_planned"] == 2 and 1 <= tuned["epochs_run"] <= 2
    assert len(tuned["drops"]) == tuned["epochs_run"]  # the validation drop after each epoch
    assert min(tuned["drops"]) == pytest.approx(tuned["drop_after"])  # the best one kept
    # drop_after is that of the model the trial goes on to convert (its Keras file).
    path = tmp_path / "model.keras"
    path.write_bytes(out.keras_model)
    kept = keras.models.load_model(path)
    assert validation_drop(kept, load_task(TaskSpec("digits"))) == tuned["drop_after"]


class RecoveringExecutor(Executor):
    """Candidates at once: each recovers 1.0 in fine-tuning from a drop of 10 before it,
    unless the request's limit rejects it."""

    def __init__(self) -> None:
        self.workers = 1
        self.requests: list[TrialRequest] = []

    def submit(self, request: TrialRequest) -> cf.Future[TrialOutput]:
        self.requests.append(request)
        out = TrialOutput(request.number, tflite=b"1234TFL3", metric=90.0)
        out.finetune = {
            "drop_before": 10.0,
            "drop_after": 9.0,
            "recovered": 1.0,
            "drops": [9.5, 9.2],  # 0.5 recovered after the first epoch
            "epochs": 3,  # planned (stopped early after two)
        }
        out.timings_s = {"build": 0.1}
        if request.reject_drop is not None and 10.0 > request.reject_drop:
            out.rejected, out.tflite = f"hopeless: 10 > {request.reject_drop}", b""
        future: cf.Future[TrialOutput] = cf.Future()
        future.set_result(out)
        return future

    def shutdown(self, cancel: bool = False) -> None:
        pass


def test_the_driver_prunes_hopeless_trials_and_still_ends(tmp_path: Path) -> None:
    from tests.search.test_driver_devices import SlowRemoteDevice

    class HostDevice(SlowRemoteDevice):
        # Measured in the driver as each candidate is built: every trial is told before
        # the next is asked, so which requests carry a limit does not depend on timing.
        shares_host_cpu = True

    config = StudyConfig(
        task="digits",
        trials=8,
        devices=("pi=http://10.9.9.9:8765",),
        techniques=("channel_pruning", "quantization"),
    )
    metric = get_metric("accuracy")
    study = create_study(config, tmp_path / "s", metric, 1.0, "digits", [], None)
    executor = RecoveringExecutor()
    driver = Driver(
        study,
        config,
        tmp_path / "s",
        build_space(config),
        metric,
        TaskSpec("digits"),
        executor,
        {"pi": HostDevice()},
        Console(file=io.StringIO()),
    )
    assert driver.run() == 0
    trials = study.get_trials()
    fixed = {t.number for t in trials if any(key in t.user_attrs for key in FIXED_KEYS)}
    assert {0, 1, 2} <= fixed  # the three baselines, then the recipes
    cap = MAX_PRUNED_PER_TRIAL * config.trials
    sampled = [r for r in executor.requests if r.number not in fixed]

    def limit(epochs: int) -> float:  # 0.5 recovered from 10 in the first epoch, 1 in all
        return MARGIN * (1.0 + (1.0 if epochs >= 2 else 10.0 - 9.5 if epochs else 0.0))

    # Sampled trials get the limit once three fine-tunings were told (the three baselines
    # were), and none once the cap of pruned trials is reached.
    limits = [limit(r.plan["finetune_epochs"]) for r in sampled[:cap]]
    assert [r.reject_drop for r in sampled] == limits + [None] * (len(sampled) - cap)
    assert all(r.reject_drop is None for r in executor.requests if r.number in fixed)
    # After the first epoch, what the second recovered; no limit after the second (no told
    # trial ran past it); without fine-tuning, twice the budget.
    after_first = MARGIN * (1.0 + 0.5)
    for request in sampled[:cap]:
        epochs = request.plan["finetune_epochs"]
        assert (
            request.reject_after_epoch
            == ((after_first,) + (None,) * (epochs - 2))[: max(0, epochs - 1)]
        )
        assert request.reject_unrecovered == UNRECOVERED_MARGIN * 1.0
    for request in [r for r in executor.requests if r.number in fixed] + sampled[cap:]:
        assert request.reject_after_epoch == () and request.reject_unrecovered is None
    # Every candidate knows the budget, so a structural change over it may fine-tune longer.
    assert {r.max_drop for r in executor.requests} == {1.0}
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    # Pruned trials do not count toward the eight asked for; past the cap, none is rejected.
    assert len(pruned) == MAX_PRUNED_PER_TRIAL * config.trials
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == config.trials
    for trial in pruned:
        assert trial.user_attrs[attrs.PRUNED_REASON].startswith("hopeless")
        metrics = trial.user_attrs[attrs.METRICS]
        assert metrics["finetune"]["drop_before"] == 10.0 and metrics["timings_s"]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert all(t.user_attrs[attrs.METRICS]["finetune"]["recovered"] == 1.0 for t in complete)
    # The report counts them and says why each was pruned.
    from devicefit.results.pareto import pareto_front
    from devicefit.results.records import study_record
    from devicefit.results.report import summary

    record = study_record(study, tmp_path / "s")
    assert summary(record, pareto_front(record))["trials"]["pruned"] == len(pruned)
    reasons = {t.number: t.fail_reason for t in record.trials if t.state == "PRUNED"}
    assert len(reasons) == len(pruned) and all(r.startswith("hopeless") for r in reasons.values())

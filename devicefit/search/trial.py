"""One trial: build the candidate from its plan, fine-tune, convert, score on the test split.

Runs inside an executor worker. Latency is measured afterwards by the driver, so
that no measurement ever shares the CPU with another trial's work.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from devicefit.evaluators.custom_metric import MetricError
from devicefit.quiet import silence_tensorflow

silence_tensorflow()


@dataclass(frozen=True)
class TrialRequest:
    number: int
    plan: dict[str, Any]
    task: Any  # TaskSpec
    seed: int
    threads: int = 1
    keep_keras: bool = True  # save the Keras model before conversion
    # sha256 of files the study already scored: a candidate that converts to one of them
    # is the same candidate and is not scored again.
    known_files: frozenset[str] = frozenset()
    # The largest validation drop before fine-tuning worth fine-tuning (search/rejection.py);
    # None: never rejected (references, and until the study knows what fine-tuning recovers).
    reject_drop: float | None = None
    # The largest best-so-far drop after epoch 1, 2, ... worth the remaining epochs (None:
    # no limit at that epoch), and the largest drop of a plan that does not fine-tune.
    reject_after_epoch: tuple[float | None, ...] = ()
    reject_unrecovered: float | None = None
    # The study's metric budget (validation drop, metric units): a heavier structural
    # change still over it after fine-tuning may get more epochs. None: never more.
    max_drop: float | None = None
    # The most epochs fine-tuning may run in all, its extra ones included (a profile plan
    # already planned longer for what it removes earns no second helping). None: no cap.
    max_epochs: int | None = None

    def run(self) -> TrialOutput:
        """The trial, built, converted and scored here (``run_trial``).

        Returns:
            Its output; a bad candidate's failure is in ``error``.
        """
        return run_trial(self)


@dataclass
class TrialOutput:
    number: int
    tflite: bytes = b""
    metric: float = float("nan")
    size_bytes: int = 0
    macs: int = 0
    params: int = 0
    ops: dict[str, int] = field(default_factory=dict)
    layer_macs: dict[str, int] = field(default_factory=dict)  # of the Keras model converted
    keras_model: bytes = b""  # the .keras file before conversion; empty if it cannot be saved
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # set when the candidate failed; the trial fails with it
    node: str | None = None  # the Ray node that built it (None: this machine)
    worker_rss_mb: float | None = None  # the worker's resident memory after the trial
    tflite_sha256: str = ""
    known_file: bool = False  # the file is one in ``known_files``: not scored here
    same_as: int | None = None  # the earlier trial whose file (and scores) this one reuses
    paused_trials: int | None = None  # other trials held paused while it measured here
    # Drops on the validation split before and after fine-tuning, what it recovered, the
    # epochs planned and run; empty when the trial did not fine-tune.
    finetune: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None  # hopeless before fine-tuning: pruned, not fine-tuned


def run_trial(request: TrialRequest) -> TrialOutput:
    """Build, fine-tune, convert and score the candidate of ``request``.

    Never raises for a bad candidate: the failure is returned so the search goes on.

    Args:
        request: the trial: its plan, task, seed and limits.

    Returns:
        Its output: ``error`` set when the candidate failed, ``rejected`` when it was pruned
        as hopeless.
    """
    out = TrialOutput(request.number)
    try:
        _run(request, out)
    except MetricError as exc:  # already one line naming the user's function and file
        out.error = str(exc)[:2000]
    except Exception as exc:  # noqa: BLE001 - any candidate failure fails only this trial
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
        out.error = f"{type(exc).__name__}: {exc}{where}"[:2000]
    return out


def _run(request: TrialRequest, out: TrialOutput) -> None:
    """Build, fine-tune, convert and score the candidate of ``request`` into ``out``."""
    import keras

    from devicefit.spaces import get_technique
    from devicefit.spaces.base import Plan
    from devicefit.tasks import load_task

    clock = time.perf_counter()
    plan = Plan.from_dict(request.plan)
    task = load_task(request.task)
    keras.utils.set_random_seed(request.seed)
    steps = [(get_technique(s.technique), s.params) for s in plan.steps]
    model = _rewritten(task, steps, out.notes)
    out.timings_s["build"] = time.perf_counter() - clock

    clock = time.perf_counter()
    model = _tuned(model, task, plan, steps, request, out)
    if model is None:  # rejected as hopeless
        return
    out.timings_s["finetune"] = time.perf_counter() - clock
    _record_model(model, task, request, out)

    clock = time.perf_counter()
    out.tflite = convert_candidate(model, steps, task.input_shape, task.calibration)
    out.tflite_sha256 = hashlib.sha256(out.tflite).hexdigest()
    out.timings_s["convert"] = time.perf_counter() - clock
    if out.tflite_sha256 in request.known_files:
        out.known_file = True  # the driver takes its scores from the trial that made it
        return
    clock = time.perf_counter()
    _score_file(task, request, out)
    out.timings_s["evaluate"] = time.perf_counter() - clock


def _rewritten(task: Any, steps: list[tuple[Any, dict[str, Any]]], notes: list[str]) -> Any:
    """A copy of the task's model with every graph technique's rewrite, and its BatchNorm
    statistics re-estimated after them."""
    from devicefit.spaces.base import GraphTechnique
    from devicefit.spaces.batchnorm_stats import recalibrate_batchnorm

    model = _copy(task.model)
    for tech, params in steps:
        if isinstance(tech, GraphTechnique):
            tech.prepare(task.calibration)
            applied = tech.rewrite(model, params)
            model = applied.model
            notes += [f"{tech.name}: {note}" for note in applied.notes]
    count = recalibrate_batchnorm(model, task.calibration, task.model)
    if count:
        notes.append(
            f"batchnorm: statistics of {count} layer(s) re-estimated on "
            f"{len(task.calibration)} training inputs after the rewrite"
        )
    return model


def _tuned(
    model: Any,
    task: Any,
    plan: Any,
    steps: list[tuple[Any, dict[str, Any]]],
    request: TrialRequest,
    out: TrialOutput,
) -> Any:
    """The model fine-tuned (when the plan changed it and asks for epochs) with its weights
    techniques finalized; None when it was rejected as hopeless (``out.rejected`` set)."""
    from devicefit.search.rejection import validation_drop, validation_reference
    from devicefit.spaces.base import GraphTechnique, WeightsTechnique

    clock = time.perf_counter()
    weights = [(t, p) for t, p in steps if isinstance(t, WeightsTechnique)]
    changed = any(isinstance(t, GraphTechnique | WeightsTechnique) for t, _ in steps)
    kept: float | None = None  # the validation metric fine-tuning ended on, when it kept it
    if plan.finetune_epochs > 0 and changed:
        done, kept = _finetuned(model, task, plan, weights, request, out)
        if not done:
            spent = "finetune" if "epochs_run" in out.finetune else "score_before_finetune"
            out.timings_s[spent] = time.perf_counter() - clock
            return None
    model = _finalized(model, weights, out.notes)
    if changed and not out.finetune and _unrecovered(model, task, request, out):
        out.timings_s["score_before_convert"] = time.perf_counter() - clock
        return None
    if out.finetune:
        if kept is None:  # no best epoch kept (a weights technique finalized since): score
            after = validation_drop(model, task)
        else:
            after = task.metric.drop(validation_reference(task), kept)
        out.finetune.update(drop_after=after, recovered=out.finetune["drop_before"] - after)
    return model


def _record_model(model: Any, task: Any, request: TrialRequest, out: TrialOutput) -> None:
    """The model's MACs per layer, and its .keras file when the study keeps them."""
    from devicefit.spaces.macs import macs_by_layer

    try:  # for the report only: a model it cannot count must not fail the trial
        out.layer_macs = macs_by_layer(model, task.input_shape)
    except Exception as exc:  # noqa: BLE001 - MACs per layer are for the report only
        out.notes.append(f"MACs per layer not counted: {type(exc).__name__}: {exc}"[:300])
    if request.keep_keras:
        out.keras_model = _keras_file(model, out.notes)


def _score_file(task: Any, request: TrialRequest, out: TrialOutput) -> None:
    """The task metric of ``out.tflite`` on the test split, and the file's statistics."""
    from devicefit.evaluators.tflite_predict import predict
    from devicefit.evaluators.tflite_stats import tflite_stats

    pred = predict(out.tflite, task.data.x_test, num_threads=request.threads)
    out.metric = task.metric(task.data.y_test, pred)
    stats = tflite_stats(out.tflite)
    out.size_bytes, out.macs, out.params, out.ops = (
        stats.size_bytes,
        stats.macs,
        stats.params,
        stats.ops,
    )


def _finalized(model: Any, weights: list[tuple[Any, dict[str, Any]]], notes: list[str]) -> Any:
    """``model`` with each weights technique's final masks or clusters applied."""
    for tech, params in weights:
        applied = tech.finalize(model, params)
        model = applied.model
        notes += [f"{tech.name}: {note}" for note in applied.notes]
    return model


def _unrecovered(model: Any, task: Any, request: TrialRequest, out: TrialOutput) -> bool:
    """Whether a changed candidate that fine-tunes for no epoch is already beyond
    ``request.reject_unrecovered`` on the validation split (``out.rejected`` set)."""
    from devicefit.search.rejection import unrecovered_reason, validation_drop

    if request.reject_unrecovered is None:
        return False
    drop = validation_drop(model, task)
    if drop <= request.reject_unrecovered:
        return False
    out.finetune = {"drop_before": drop, "epochs_planned": 0}
    out.rejected = unrecovered_reason(drop, request.reject_unrecovered, task.metric.name)
    return True


def _finetuned(
    model: Any,
    task: Any,
    plan: Any,
    weights: list[tuple[Any, dict[str, Any]]],
    request: TrialRequest,
    out: TrialOutput,
) -> tuple[bool, float | None]:
    """Fine-tune ``model`` in place (recording the share of MACs the plan removed and the
    validation drop after each epoch); False (and ``out.rejected`` set) when its drop
    before fine-tuning, or after an epoch but the last, is hopeless. With it, the
    validation metric of the weights fine-tuning kept (None when it kept no best epoch)."""
    from devicefit.search.rejection import (
        epoch_rejection_reason,
        rejection_reason,
        validation_reference,
    )

    start, before = _start(model, task, plan, weights, out)
    if request.reject_drop is not None and before > request.reject_drop:
        out.rejected = rejection_reason(
            before, request.reject_drop, plan.finetune_epochs, task.metric.name
        )
        return False, None
    ran = _trained(model, task, plan.finetune_epochs, weights, request, start, out)
    if ran["hopeless"]:
        stop = ran["hopeless"]
        out.rejected = epoch_rejection_reason(
            stop["epoch"], plan.finetune_epochs, stop["drop"], stop["limit"], task.metric.name
        )
        return False, None
    kept = ran["kept_score"]
    if ran["improving"] and request.max_drop is not None:
        after = task.metric.drop(validation_reference(task), kept)
        kept = _finetune_longer(
            model, task, request.max_drop, after, out.finetune, request.max_epochs, kept
        )
    return True, kept


def _trained(
    model: Any,
    task: Any,
    epochs: int,
    weights: list[tuple[Any, dict[str, Any]]],
    request: TrialRequest,
    start: float,
    out: TrialOutput,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place for ``epochs``; what search/finetune.py's ``finetune``
    gives, with the share of MACs removed and the drop after each epoch recorded."""
    from devicefit.search.finetune import finetune, steps_per_epoch
    from devicefit.search.rejection import validation_reference

    removed = _macs_removed(model, task)
    total = epochs * steps_per_epoch(task)
    callbacks = [cb for t, p in weights for cb in t.training_callbacks(model, p, total)]
    # A weights technique's schedule must run to its end: no early stop, no best epoch.
    ran = finetune(
        model,
        task,
        epochs,
        callbacks,
        keep_best=not weights,
        hopeless_after=request.reject_after_epoch,
        # Without weights techniques the model trains from the weights just scored.
        start_score=None if weights else start,
    )
    reference = validation_reference(task)
    out.finetune.update(
        macs_removed=removed,
        epochs=epochs,
        epochs_run=ran["epochs_run"],
        drops=[task.metric.drop(reference, score) for score in ran["epoch_scores"]],
    )
    return ran


def _start(
    model: Any,
    task: Any,
    plan: Any,
    weights: list[tuple[Any, dict[str, Any]]],
    out: TrialOutput,
) -> tuple[float, float]:
    """The validation metric fine-tuning starts from and its drop, recorded in
    ``out.finetune``.

    With the weights techniques that act before the first step applied, as fine-tuning
    will start: a plan that clusters to 2 bits is judged on what 2-bit clusters cost, not
    on the model before them. A gradual one (magnitude pruning) starts from the model
    without its masks; all at once they would cost more than fine-tuning ever faces."""
    from devicefit.search.rejection import validation_reference, validation_score

    one_shot = bool(weights) and all(t.applied_before_training for t, _ in weights)
    start = validation_score(_finalized(_copy(model), weights, []) if one_shot else model, task)
    before = task.metric.drop(validation_reference(task), start)
    out.finetune = {
        "drop_before": before,
        "epochs_planned": plan.finetune_epochs,
        "weights": bool(weights),  # its masks or clusters are remade during fine-tuning
        "one_shot": one_shot,  # and were all applied to score it before
    }
    return start, before


def _finetune_longer(
    model: Any,
    task: Any,
    budget: float,
    after: float,
    record: dict[str, Any],
    max_epochs: int | None = None,
    score: float | None = None,
) -> float | None:
    """A warm restart of fine-tuning, for as many more epochs as ``extra_epochs`` gives a
    structural change still gaining and still over the budget (``after``: its validation
    drop now; ``score``: its validation metric now, when known), up to ``max_epochs`` in
    all; recorded as ``epochs_extra`` and ``epochs_extra_run``. Returns the validation
    metric of the weights kept (``score`` when no epoch was added)."""
    from devicefit.search.extra_epochs import extra_epochs
    from devicefit.search.finetune import LEARNING_RATE, RESTART_RATE, finetune

    more = extra_epochs(
        record["epochs"], record["macs_removed"], record["drop_before"], after, budget
    )
    if max_epochs is not None:
        more = max(0, min(more, max_epochs - record["epochs"]))
    if not more:
        return score
    ran = finetune(
        model, task, more, [], learning_rate=RESTART_RATE * LEARNING_RATE, start_score=score
    )
    record.update(epochs_extra=more, epochs_extra_run=ran["epochs_run"])
    return ran["kept_score"]


_MACS: dict[int, tuple[Any, int]] = {}


def _macs_removed(model: Any, task: Any) -> float:
    """The share of the task model's MACs (counted once per process) that ``model`` no
    longer has; 0 for a model whose MACs cannot be counted."""
    from devicefit.spaces.macs import keras_macs

    try:
        from devicefit.tasks.base import once_per_task

        whole = once_per_task(_MACS, task, lambda: keras_macs(task.model, task.input_shape))
        return 1.0 - keras_macs(model, task.input_shape) / max(1, whole)
    except Exception:  # noqa: BLE001 - only recorded, for the report
        return 0.0


def convert_candidate(
    model: Any,
    steps: list[tuple[Any, dict[str, Any]]],
    input_shape: tuple[int, ...],
    calibration: Any,
) -> bytes:
    """The TFLite file of a built candidate: the plan's converter decides how (float32 when
    the plan has none), as a sparse file where a weights technique asks for one.

    Args:
        model: the built (and fine-tuned) Keras model.
        steps: the plan's (technique, params); the last converter's are used.
        input_shape: the model's input shape.
        calibration: calibration inputs (for integer quantization).

    Returns:
        The file's bytes.
    """
    from devicefit.spaces import default_converter
    from devicefit.spaces.base import ConvertContext, ConvertTechnique, WeightsTechnique

    converters = [(t, p) for t, p in steps if isinstance(t, ConvertTechnique)]
    if not converters:
        fallback = default_converter()
        converters = [(fallback, fallback.identity_params())]
    tech, params = converters[-1]
    sparse = any(t.wants_sparse_file(p) for t, p in steps if isinstance(t, WeightsTechnique))
    return tech.convert(model, params, ConvertContext(input_shape, calibration, sparse))


def _copy(model: Any) -> Any:
    """A deep copy, so techniques and training never touch the task's original model."""
    from devicefit.spaces.rebuild import clone_with_weights

    return clone_with_weights(model)


def _keras_file(model: Any, notes: list[str]) -> bytes:
    """The model as a .keras file, so users can fine-tune or convert it themselves."""
    import tempfile
    from pathlib import Path

    from devicefit.tasks.cache import uncompiled_copy

    try:
        plain = uncompiled_copy(model)
    except Exception:  # noqa: BLE001 - a subclassed model: saved with its optimizer still beats not saved
        plain = model
    with tempfile.TemporaryDirectory(prefix="devicefit-keras-") as tmp:
        path = Path(tmp) / "model.keras"
        try:
            plain.save(path)
        except Exception as exc:  # noqa: BLE001 - an unsavable layer must not fail the trial
            notes.append(f"Keras model not saved: {type(exc).__name__}: {exc}"[:300])
            return b""
        return path.read_bytes()

"""Sensitivity profile: how much of the metric each unit gives up to each technique.

For every unit a technique can act on (a layer at ``per-layer`` granularity, a block at
``per-block``) and each of a few settings (mild, medium, strong: ``SENSITIVITY_LEVELS``),
the technique is applied to that unit alone — the rest of the model at the technique's
identity — and the metric measured without fine-tuning on a validation subset. The
identity setting is measured too, as the check that "nothing removed" costs nothing.
A rewritten model is scored with its BatchNorm statistics re-estimated on the
calibration inputs (spaces/batchnorm_stats.py), as a trial scores it before fine-tuning.

How a setting is applied follows the technique's stage: graph techniques rewrite the Keras
model, weight techniques make their final weights (masks, clusters) on a copy, convert
techniques write the TFLite file; the metric comes from the Keras model for the first two
and from the file for the last, each against the untouched model measured the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from devicefit.spaces.base import (
    PER_LAYER,
    ConvertContext,
    ConvertTechnique,
    GraphTechnique,
    Technique,
    WeightsTechnique,
)
from devicefit.spaces.batchnorm_stats import recalibrate_batchnorm
from devicefit.spaces.blocks import find_blocks
from devicefit.spaces.eager_predict import model_outputs
from devicefit.spaces.graph import graph_view
from devicefit.spaces.macs import macs_by_layer

# Per technique: its per-unit parameter, the value at which it removes nothing, and the
# values of the mild, medium and strong settings (an on/off technique has only "strong").
SENSITIVITY_LEVELS: dict[str, tuple[str, Any, tuple[Any, ...]]] = {
    "depth_pruning": ("ratio", 0.0, (1.0,)),
    "channel_pruning": ("ratio", 0.0, (0.25, 0.5, 0.7)),
    "magnitude_pruning": ("sparsity", 0.0, (0.3, 0.6, 0.9)),
    "lowrank": ("rank_ratio", 1.0, (0.75, 0.5, 0.25)),
    "kernel_reduction": ("shrink", 0, (1, 2, 4)),
    "clustering": ("bits", 0, (6, 4, 2)),
    "quantization": ("precision", "float", ("w8", "a8w8", "w4")),
}
LEVEL_NAMES = ("identity", "mild", "medium", "strong")


@dataclass(frozen=True)
class SensitivityPoint:
    unit: str
    layers: tuple[str, ...]
    technique: str
    level: str  # identity, mild, medium or strong
    setting: Any  # the value of the technique's per-unit parameter
    metric: float | None  # None when the setting could not be applied (``error`` says why)
    drop: float | None  # against the untouched model measured the same way; >0 is worse
    error: str | None = None
    # The share of its MACs each layer of the untouched model keeps, for the layers that
    # changed (search/sensitivity_savings.py turns it into time saved): a graph technique's
    # rewrite measured, {} for weight techniques (dense kernels run every weight, zero or
    # not), None for convert techniques (their kernels, not their MACs, set the time).
    macs_kept: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The point as data for JSON.

        Returns:
            Field name -> value (``dataclasses.asdict``).
        """
        return asdict(self)


@dataclass(frozen=True)
class SensitivityJob:
    """One point to score: ``technique`` at ``level`` (its parameter at ``setting``) on the
    ``layers`` of ``unit``. Plain data, so a job can be sent to a worker process or node."""

    unit: str
    layers: tuple[str, ...]
    technique: str
    level: str
    setting: Any


def sensitivity_jobs(
    model: Any,
    techniques: list[Technique],
    granularity: str = "per-layer",
    done: set[tuple[str, str, str]] | None = None,
) -> list[SensitivityJob]:
    """Every unit x technique x level (identity first) not in ``done``, in the order a
    profile lists them.

    Args:
        model: the functional Keras model.
        techniques: the techniques to profile; those without ``SENSITIVITY_LEVELS`` are skipped.
        granularity: "per-layer" or "per-block": what a unit is.
        done: the (unit, technique, level) points already scored.

    Returns:
        The jobs, technique by technique and unit by unit, from identity to strong.
    """
    blocks = find_blocks(graph_view(model))
    jobs = []
    for technique in techniques:
        if technique.name not in SENSITIVITY_LEVELS:
            continue
        _, identity, values = SENSITIVITY_LEVELS[technique.name]
        settings = list(zip(level_names(values), (identity, *values), strict=True))
        for unit, layers in technique.units(model, granularity, blocks).items():
            jobs += [
                SensitivityJob(unit, tuple(layers), technique.name, level, value)
                for level, value in settings
                if (unit, technique.name, level) not in (done or set())
            ]
    return jobs


@dataclass(frozen=True)
class Baseline:
    """What the points of one way of scoring (Keras model or TFLite file) are taken against,
    made once per model: the untouched model's metric, the context its points are scored in
    (a convert technique's carries the model's float file, converted once for all of them
    instead of once per point), and the untouched model's MACs per layer."""

    reference: float
    context: ConvertContext
    layer_macs: dict[str, int]


def baseline(
    model: Any,
    technique: Technique,
    job: SensitivityJob,
    x: np.ndarray,
    y: np.ndarray,
    metric: Any,
    context: ConvertContext,
) -> Baseline:
    """The baseline of ``technique``'s way of scoring (``job``: any of its jobs).

    Args:
        model: the untouched Keras model.
        technique: a technique scored that way.
        job: any of its jobs (a convert technique's names the identity it converts at).
        x: the validation inputs.
        y: their targets.
        metric: the Metric (callable on y_true, y_pred).
        context: the input shape and calibration inputs.

    Returns:
        The untouched model's metric, the context its points are scored in and its MACs per
        layer.
    """
    reference = _score(model, None, technique, {}, x, y, metric, context)
    scoring = context
    if isinstance(technique, ConvertTechnique):
        identity = replace(job, level="identity", setting=SENSITIVITY_LEVELS[job.technique][1])
        float_file = technique.convert(model, job_params(identity, technique), context)
        scoring = replace(context, float_file=float_file)
    return Baseline(reference, scoring, macs_by_layer(model, context.input_shape))


def score_job(
    model: Any,
    job: SensitivityJob,
    technique: Technique,
    x: np.ndarray,
    y: np.ndarray,
    metric: Any,
    base: Baseline,
) -> SensitivityPoint:
    """The point of ``job`` (``technique`` is its technique); a setting that fails on the
    unit is recorded with its error instead of raising: a profile goes on past it.

    Args:
        model: the untouched Keras model.
        job: the point to score.
        technique: the job's technique.
        x: the validation inputs.
        y: their targets.
        metric: the Metric (callable on y_true, y_pred, with ``drop``).
        base: the baseline of the technique's way of scoring (``baseline``).

    Returns:
        The point: its metric and drop against ``base``, or its error.
    """
    params = job_params(job, technique)
    where = (job.unit, job.layers, job.technique, job.level, job.setting)
    try:
        kept: dict[str, float] | None = {} if isinstance(technique, WeightsTechnique) else None
        changed: Any = None  # a graph technique's rewritten Keras model
        if isinstance(technique, GraphTechnique):  # rewritten once: for its MACs, then scored
            changed = technique.rewrite(model, params).model
            after = macs_by_layer(changed, base.context.input_shape)
            kept = macs_kept(base.layer_macs, after)
            # Scored as a trial scores it before fine-tuning (the identity: untouched).
            recalibrate_batchnorm(changed, base.context.calibration, model)
        way = scored_on(technique)
        score = _score(model, way, technique, params, x, y, metric, base.context, changed)
        drop = float(metric.drop(base.reference, score))
        return SensitivityPoint(*where, score, drop, None, kept)
    except Exception as exc:  # noqa: BLE001 - a technique's failure on one unit is data
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return SensitivityPoint(*where, None, None, message)


def score_jobs(
    model: Any,
    jobs: list[SensitivityJob],
    techniques: dict[str, Technique],
    x: np.ndarray,
    y: np.ndarray,
    metric: Any,
    context: ConvertContext,
    baselines: dict[str, Baseline] | None = None,
    on_point: Callable[[SensitivityPoint], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[SensitivityPoint]:
    """``jobs`` scored one after another. The baselines are made as the jobs need them.

    Args:
        model: the untouched Keras model.
        jobs: the points to score, in order.
        techniques: technique name -> instance, for every job's technique.
        x: the validation inputs.
        y: their targets.
        metric: the Metric (callable on y_true, y_pred, with ``drop``).
        context: the input shape and calibration inputs (graph techniques rank by them).
        baselines: way of scoring -> its baseline, kept here when given (a worker keeps its
            own across requests); filled in place.
        on_point: as in ``sensitivity_profile``.
        progress: as in ``sensitivity_profile``: called with (points scored, points in all).

    Returns:
        The points, in the order of ``jobs``.
    """
    baselines = {} if baselines is None else baselines
    for technique in techniques.values():  # ranked by activations, as a trial's rewrite is
        if isinstance(technique, GraphTechnique):
            technique.prepare(context.calibration)
    points = []
    for number, job in enumerate(jobs, start=1):
        technique = techniques[job.technique]
        way = scored_on(technique)
        if way not in baselines:
            baselines[way] = baseline(model, technique, job, x, y, metric, context)
        points.append(score_job(model, job, technique, x, y, metric, baselines[way]))
        if on_point is not None:
            on_point(points[-1])
        if progress is not None:
            progress(number, len(jobs))
    return points


def level_names(values: tuple[Any, ...]) -> tuple[str, ...]:
    """The names of the identity and of ``values``: the strongest is always "strong".

    Args:
        values: a technique's settings, mild to strong (``SENSITIVITY_LEVELS``).

    Returns:
        "identity", then the last ``len(values)`` of "mild", "medium", "strong".
    """
    return ("identity", *LEVEL_NAMES[len(LEVEL_NAMES) - len(values) :])


def job_params(job: SensitivityJob, technique: Technique) -> dict[str, Any]:
    """The technique's parameters for ``job``: its setting on the unit's layers, the
    identity everywhere else.

    Args:
        job: the point.
        technique: its technique.

    Returns:
        ``identity_params()`` with ``PER_LAYER`` setting the job's parameter on each layer
        of the unit.
    """
    param = SENSITIVITY_LEVELS[job.technique][0]
    return {
        **technique.identity_params(),
        PER_LAYER: {layer: {param: job.setting} for layer in job.layers},
    }


def macs_kept(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Per layer of the untouched model whose MACs changed, the share it keeps. A rewrite
    keeps a replaced layer's name on its last part and names new parts ``<name>_<suffix>``
    (spaces/macs.py), so a new layer counts toward the layer whose name is the longest
    prefix of its own; a new layer with no such prefix is not counted.

    Args:
        before: the untouched model's MACs per layer (``macs_by_layer``).
        after: the rewritten model's.

    Returns:
        Layer name -> the share of its MACs kept (0.0: removed), for shares other than 1.
    """
    grouped: dict[str, int] = {}
    for name, macs in after.items():
        owner = name if name in before else _owner(name, before)
        if owner is not None:
            grouped[owner] = grouped.get(owner, 0) + macs
    kept = {name: grouped.get(name, 0) / macs for name, macs in before.items() if macs}
    return {name: share for name, share in kept.items() if share != 1.0}


def _owner(name: str, layers: dict[str, int]) -> str | None:
    owners = [layer for layer in layers if name.startswith(f"{layer}_")]
    return max(owners, key=len) if owners else None


def sensitivity_profile(
    model: Any,
    techniques: list[Technique],
    x: np.ndarray,
    y: np.ndarray,
    metric: Any,
    context: ConvertContext,
    granularity: str = "per-layer",
    progress: Callable[[int, int], None] | None = None,
    done: set[tuple[str, str, str]] | None = None,
    on_point: Callable[[SensitivityPoint], None] | None = None,
) -> list[SensitivityPoint]:
    """Every unit x technique x level (identity first), on the validation subset ``x, y``,
    in this process (search/sensitivity_request.py shares the jobs among workers).

    A setting that fails on a unit is recorded with its error; the profile goes on.

    Args:
        model: the untouched functional Keras model.
        techniques: the techniques to profile.
        x: the validation inputs.
        y: their targets.
        metric: a Metric (callable on y_true, y_pred, with ``drop``).
        context: the input shape and calibration inputs.
        granularity: "per-layer" or "per-block": what a unit is.
        progress: called with (points scored, points in all) after each point.
        done: the (unit, technique, level) points already scored (a resumed profile), skipped.
        on_point: called with each new point as soon as it is scored (to save it).

    Returns:
        The new points, in the order ``sensitivity_jobs`` lists them.
    """
    jobs = sensitivity_jobs(model, techniques, granularity, done)
    by_name = {t.name: t for t in techniques}
    return score_jobs(model, jobs, by_name, x, y, metric, context, None, on_point, progress)


def scored_on(technique: Technique) -> str:
    """How a setting is scored: on the Keras model, or on the TFLite file.

    Args:
        technique: the technique.

    Returns:
        "tflite" for a convert technique, else "keras".
    """
    return "tflite" if isinstance(technique, ConvertTechnique) else "keras"


def _score(
    model: Any,
    way: str | None,
    technique: Technique,
    params: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    metric: Any,
    context: ConvertContext,
    built: Any = None,
) -> float:
    """The metric of ``model`` with ``technique`` at ``params`` (``way`` None: untouched,
    scored the way the technique's settings will be); ``built``: a graph technique's
    model at ``params`` when the caller has built it already."""
    if isinstance(technique, ConvertTechnique):  # scored on the TFLite file
        from devicefit.evaluators.tflite_predict import predict

        params = params or technique.identity_params()
        return float(metric(y, predict(technique.convert(model, params, context), x)))
    changed = model
    if way is not None and isinstance(technique, GraphTechnique):
        changed = built if built is not None else technique.rewrite(model, params).model
    elif way is not None and isinstance(technique, WeightsTechnique):
        changed = _copy(model)
        technique.finalize(changed, params)
    return float(metric(y, model_outputs(changed, x)))


def _copy(model: Any) -> Any:
    from devicefit.spaces.rebuild import clone_with_weights

    return clone_with_weights(model)

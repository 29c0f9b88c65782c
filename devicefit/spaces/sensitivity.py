"""Sensitivity profile: how much of the metric each unit gives up to each technique.

For every unit a technique can act on (a layer at ``per-layer`` granularity, a block at
``per-block``) and each of a few settings (mild, medium, strong: ``SENSITIVITY_LEVELS``),
the technique is applied to that unit alone — the rest of the model at the technique's
identity — and the metric measured without fine-tuning on a validation subset. The
identity setting is measured too, as the check that "nothing removed" costs nothing.

How a setting is applied follows the technique's stage: graph techniques rewrite the Keras
model, weight techniques make their final weights (masks, clusters) on a copy, convert
techniques write the TFLite file; the metric comes from the Keras model for the first two
and from the file for the last, each against the untouched model measured the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from devicefit.spaces.base import PER_LAYER, ConvertContext, Technique
from devicefit.spaces.blocks import find_blocks
from devicefit.spaces.graph import graph_view

# Per technique: its per-unit parameter, the value at which it removes nothing, and the
# values of the mild, medium and strong settings.
SENSITIVITY_LEVELS: dict[str, tuple[str, Any, tuple[Any, Any, Any]]] = {
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    """Every unit x technique x level (identity first), on the validation subset ``x, y``.

    ``metric`` is a Metric (callable on y_true, y_pred, with ``drop``). A setting that fails
    on a unit is recorded with its error; the profile goes on. ``done``: the (unit,
    technique, level) points already scored (a resumed profile), skipped; ``on_point`` is
    called with each new point as soon as it is scored (to save it).
    """
    blocks = find_blocks(graph_view(model))
    jobs = []
    for technique in techniques:
        if technique.name not in SENSITIVITY_LEVELS:
            continue
        param, identity, values = SENSITIVITY_LEVELS[technique.name]
        settings = list(zip(LEVEL_NAMES, (identity, *values), strict=True))
        for unit, layers in technique.units(model, granularity, blocks).items():
            jobs += [
                (technique, param, unit, tuple(layers), level, v)
                for level, v in settings
                if (unit, technique.name, level) not in (done or set())
            ]
    references: dict[str, float] = {}
    points = []
    for done, (technique, param, unit, layers, level, value) in enumerate(jobs):
        way = _way(technique)
        if way not in references:
            references[way] = _score(model, None, technique, {}, x, y, metric, context)
        params = {
            **technique.identity_params(),
            PER_LAYER: {layer: {param: value} for layer in layers},
        }
        try:
            score = _score(model, way, technique, params, x, y, metric, context)
            drop = float(metric.drop(references[way], score))
            points.append(SensitivityPoint(unit, layers, technique.name, level, value, score, drop))
        except Exception as exc:  # noqa: BLE001 - a technique's failure on one unit is data
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            points.append(
                SensitivityPoint(unit, layers, technique.name, level, value, None, None, message)
            )
        if on_point is not None:
            on_point(points[-1])
        if progress is not None:
            progress(done + 1, len(jobs))
    return points


def _way(technique: Technique) -> str:
    """How a setting is scored: on the Keras model, or on the TFLite file."""
    return "tflite" if technique.stage == "convert" else "keras"


def _score(
    model: Any,
    way: str | None,
    technique: Technique,
    params: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    metric: Any,
    context: ConvertContext,
) -> float:
    """The metric of ``model`` with ``technique`` at ``params`` (``way`` None: untouched,
    scored the way the technique's settings will be)."""
    stage_way = _way(technique)
    if stage_way == "tflite":
        from devicefit.evaluators.tflite_predict import predict

        params = params or technique.identity_params()
        return float(metric(y, predict(technique.convert(model, params, context), x)))
    changed = model
    if way is not None and technique.stage == "graph":
        changed = technique.rewrite(model, params).model
    elif way is not None and technique.stage == "weights":
        changed = _copy(model)
        technique.finalize(changed, params)
    return float(metric(y, _predict(changed, x)))


def _predict(model: Any, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """The model called eagerly, batch by batch: ``predict`` would trace a new graph for
    every rewritten model, which took longer than scoring it (digits: about 2 s a point)."""
    return np.concatenate(
        [np.asarray(model(x[i : i + batch], training=False)) for i in range(0, len(x), batch)]
    )


def _copy(model: Any) -> Any:
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone

"""Sensitivity profiles of the built-in tasks: every unit x technique x setting scored
without fine-tuning, and a setting that removes nothing costs nothing."""

from __future__ import annotations

from collections import Counter

import pytest

from devicefit.spaces import get_technique
from devicefit.spaces.base import ConvertContext
from devicefit.spaces.sensitivity import LEVEL_NAMES, SENSITIVITY_LEVELS, sensitivity_profile
from devicefit.tasks import Task

GRAPH_AND_WEIGHTS = [
    "channel_pruning",
    "magnitude_pruning",
    "lowrank",
    "kernel_reduction",
    "clustering",
]


def _profile(task: Task, names: list[str], samples: int = 128) -> list:
    techniques = [get_technique(n) for n in names]
    context = ConvertContext(task.input_shape, task.calibration)
    x, y = task.data.x_val[:samples], task.data.y_val[:samples]
    return sensitivity_profile(task.model, techniques, x, y, task.metric, context)


def _check(points: list, task: Task, names: list[str]) -> None:
    from devicefit.spaces.blocks import find_blocks
    from devicefit.spaces.graph import graph_view

    blocks = find_blocks(graph_view(task.model))
    for name in names:
        units = get_technique(name).units(task.model, "per-layer", blocks)
        mine = [p for p in points if p.technique == name]
        # Every unit the technique can act on, at every level, exactly once.
        assert Counter((p.unit, p.level) for p in mine) == Counter(
            (u, level) for u in units for level in LEVEL_NAMES
        ), name
        assert all(p.error is None for p in mine), [p.error for p in mine if p.error]
        settings = dict(
            zip(
                LEVEL_NAMES,
                (SENSITIVITY_LEVELS[name][1], *SENSITIVITY_LEVELS[name][2]),
                strict=True,
            )
        )
        assert all(p.setting == settings[p.level] for p in mine)
        # Nothing removed, nothing lost: exactly the untouched model's metric.
        assert all(p.drop == 0.0 for p in mine if p.level == "identity"), name


@pytest.mark.slow
def test_digits_every_unit_technique_and_setting(digits_task: Task) -> None:
    points = _profile(digits_task, GRAPH_AND_WEIGHTS)
    _check(points, digits_task, GRAPH_AND_WEIGHTS)
    # The profile tells units apart: the strongest channel pruning of some layer costs
    # points, and of some other layer less.
    strong = [p.drop for p in points if p.technique == "channel_pruning" and p.level == "strong"]
    assert max(strong) > 1.0 and min(strong) < max(strong)


@pytest.mark.slow
def test_srcnn_every_unit_technique_and_setting_quantization_included(sr_task: Task) -> None:
    names = [*GRAPH_AND_WEIGHTS, "quantization"]
    points = _profile(sr_task, names, samples=32)
    _check(points, sr_task, names)
    # Every quantized setting was applied: the file's outputs, so its PSNR, moved. (Which
    # precision costs a layer more depends on the trained model: on one SRCNN trained here,
    # w8 weights cost a layer 0.81 dB and w4 weights 0.57.)
    quantized = [p for p in points if p.technique == "quantization" and p.level != "identity"]
    assert quantized and all(p.drop != 0.0 for p in quantized), quantized


@pytest.mark.slow
def test_a_channel_cut_is_scored_with_its_batchnorm_statistics_re_estimated(
    digits_task: Task,
) -> None:
    """The profile scores a rewrite as a trial does before fine-tuning: with the BatchNorm
    statistics of what the cut model computes, which is what makes the drop before
    fine-tuning worth ranking on (adaptive BN)."""
    import numpy as np

    from devicefit.spaces.base import PER_LAYER
    from devicefit.spaces.batchnorm_stats import recalibrate_batchnorm

    tech = get_technique("channel_pruning")
    points = _profile(digits_task, ["channel_pruning"])
    strong = [p for p in points if p.level == "strong"]
    x, y = digits_task.data.x_val[:128], digits_task.data.y_val[:128]
    tech.prepare(digits_task.calibration)
    stale, fresh = [], []
    for point in strong:
        params = {**tech.identity_params(), PER_LAYER: {n: {"ratio": 0.7} for n in point.layers}}
        cut = tech.rewrite(digits_task.model, params).model
        stale.append(float(digits_task.metric(y, np.asarray(cut(x, training=False)))))
        recalibrate_batchnorm(cut, digits_task.calibration, digits_task.model)
        fresh.append(float(digits_task.metric(y, np.asarray(cut(x, training=False)))))
    # The profile's points are the re-estimated scores, unit by unit.
    assert [p.metric for p in strong] == pytest.approx(fresh, abs=1e-6)
    # And re-estimating is what a cut needs: over the units, it scores better than with
    # the untouched model's statistics.
    assert sum(fresh) > sum(stale), (fresh, stale)

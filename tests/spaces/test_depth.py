"""Depth pruning: identity-shortcut residual branches removed whole, least important first."""

from __future__ import annotations

import numpy as np
import pytest

from devicefit.config import StudyConfig
from devicefit.search.run import build_space
from devicefit.spaces.base import PER_LAYER
from devicefit.spaces.blocks import find_blocks
from devicefit.spaces.depth import DepthPruning, residual_adds
from devicefit.spaces.graph import graph_view
from devicefit.spaces.macs import keras_macs
from devicefit.spaces.sensitivity import sensitivity_jobs

from devicefit.quiet import silence_tensorflow  # isort: skip

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers


def two_block_net(quiet_branch: str = "b2") -> keras.Model:
    """stem -> [b1: identity residual] -> [b2: identity residual, operands swapped] ->
    [down: projection shortcut] -> head; ``quiet_branch``'s last conv is scaled tiny."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 2), name="image")
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="stem")(inputs)
    y = L.Conv2D(6, 3, padding="same", activation="relu", name="b1_a")(x)
    y = L.Conv2D(6, 3, padding="same", name="b1_b")(y)
    x = L.Add(name="b1_add")([x, y])
    y = L.Conv2D(6, 3, padding="same", activation="relu", name="b2_a")(x)
    y = L.Conv2D(6, 3, padding="same", name="b2_b")(y)
    x = L.Add(name="b2_add")([y, x])  # the shortcut second
    shortcut = L.Conv2D(8, 1, strides=2, name="down_proj")(x)
    y = L.Conv2D(8, 3, strides=2, padding="same", name="down_a")(x)
    x = L.Add(name="down_add")([shortcut, y])
    outputs = L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="gap")(x))
    model = keras.Model(inputs, outputs)
    quiet = model.get_layer(f"{quiet_branch}_b")
    kernel, bias = quiet.get_weights()
    quiet.set_weights([kernel * 1e-3, bias * 0])
    return model


def inputs(count: int = 4) -> np.ndarray:
    return np.random.default_rng(0).random((count, 8, 8, 2)).astype(np.float32)


def test_only_identity_shortcuts_are_removable_whichever_operand_they_are() -> None:
    adds = residual_adds(graph_view(two_block_net()))
    assert adds == {"b1_add": 0, "b2_add": 1}  # down_add has a projection: it stays


def test_a_removed_branch_leaves_exactly_the_shortcut() -> None:
    model = two_block_net()
    applied = DepthPruning().rewrite(model, {"ratio": 0.0, PER_LAYER: {"b1_add": {"ratio": 1.0}}})
    names = {layer.name for layer in applied.model.layers}
    assert not names & {"b1_a", "b1_b"}
    assert {"b1_add", "b2_a", "b2_b", "down_a"} <= names
    # The original with b1's branch silenced computes the same.
    for layer in ("b1_b",):
        kernel, bias = model.get_layer(layer).get_weights()
        model.get_layer(layer).set_weights([kernel * 0, bias * 0])
    x = inputs()
    np.testing.assert_allclose(np.asarray(applied.model(x)), np.asarray(model(x)), atol=1e-5)
    assert "b1_add: residual branch removed, shortcut kept" in applied.notes
    assert "b2_add: kept" in applied.notes


def test_identity_changes_nothing_and_ratio_one_removes_every_identity_branch() -> None:
    model = two_block_net()
    same = DepthPruning().rewrite(model, {"ratio": 0.0}).model
    x = inputs()
    np.testing.assert_array_equal(np.asarray(same(x)), np.asarray(model(x)))
    gone = DepthPruning().rewrite(model, {"ratio": 1.0}).model
    names = {layer.name for layer in gone.layers}
    assert not names & {"b1_a", "b1_b", "b2_a", "b2_b"}
    assert {"down_proj", "down_a"} <= names
    assert keras_macs(gone, (1, 8, 8, 2)) < keras_macs(model, (1, 8, 8, 2))


@pytest.mark.parametrize("quiet", ["b1", "b2"])
def test_a_global_ratio_removes_the_branch_adding_least_first(quiet: str) -> None:
    technique = DepthPruning()
    technique.prepare(inputs(16))
    applied = technique.rewrite(two_block_net(quiet), {"ratio": 0.5})
    assert [n.split(":")[0] for n in applied.notes if "removed" in n] == [f"{quiet}_add"]


def test_a_units_own_ratio_overrides_the_global_one() -> None:
    params = {"ratio": 1.0, PER_LAYER: {"b2_add": {"ratio": 0.0}}}
    applied = DepthPruning().rewrite(two_block_net(), params)
    names = {layer.name for layer in applied.model.layers}
    assert "b2_a" in names and "b1_a" not in names


def test_units_are_the_blocks_or_adds_holding_removable_branches() -> None:
    model = two_block_net()
    blocks = find_blocks(graph_view(model))
    per_block = DepthPruning().units(model, "per-block", blocks)
    assert sorted(layers for layers in per_block.values()) == [["b1_add"], ["b2_add"]]
    assert DepthPruning().units(model, "per-layer", blocks) == {
        "b1_add": ["b1_add"],
        "b2_add": ["b2_add"],
    }
    assert DepthPruning().units(model, "global", blocks) == {}


def test_the_profile_scores_one_setting_per_unit_besides_the_identity() -> None:
    jobs = sensitivity_jobs(two_block_net(), [DepthPruning()], "per-block")
    assert sorted((j.level, j.setting) for j in jobs) == [
        ("identity", 0.0),
        ("identity", 0.0),
        ("strong", 1.0),
        ("strong", 1.0),
    ]


def plain_net() -> keras.Model:
    inputs = keras.Input((8, 8, 2))
    x = L.Conv2D(4, 3, name="conv")(inputs)
    return keras.Model(inputs, L.Dense(2, name="head")(L.Flatten()(x)))


def test_a_study_of_every_technique_leaves_it_out_where_there_is_no_residual() -> None:
    names = [t.name for t in build_space(StudyConfig(), plain_net()).techniques]
    assert "depth_pruning" not in names and "channel_pruning" in names
    names = [t.name for t in build_space(StudyConfig(), two_block_net()).techniques]
    assert "depth_pruning" in names
    asked = StudyConfig(techniques=("depth_pruning", "quantization"))
    assert [t.name for t in build_space(asked, plain_net()).techniques] == [
        "depth_pruning",
        "quantization",
    ]

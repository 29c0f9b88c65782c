"""Blocks from the graph, and per-block / per-layer search spaces."""

from __future__ import annotations

import optuna
import pytest
from spaces_zoo import build_zoo_model

from devicefit.config import StudyConfig
from devicefit.errors import UsageError
from devicefit.search.run import build_space
from devicefit.spaces import all_techniques, get_technique
from devicefit.spaces.base import PER_LAYER, Step
from devicefit.spaces.blocks import block_of, find_blocks
from devicefit.spaces.graph import graph_view
from devicefit.spaces.space import RECIPE_SETTINGS, SearchSpace


def test_blocks_keep_a_residual_block_together() -> None:
    blocks = find_blocks(graph_view(build_zoo_model("residual_cnn").model))
    assert list(blocks.values()) == [
        ["stem"],
        ["res_a", "res_bn", "res_relu", "res_b", "add", "gap"],
        ["fc"],
        ["probs"],
    ]


def test_resnet50_blocks_are_its_residual_blocks() -> None:
    where = block_of(find_blocks(graph_view(build_zoo_model("resnet50").model)))
    first = where["conv2_block1_1_conv"]
    assert where["conv2_block1_0_conv"] == where["conv2_block1_add"] == first
    assert where["conv2_block1_out"] == first
    assert where["conv2_block2_1_conv"] != first
    assert where["conv2_block2_3_conv"] == where["conv2_block2_1_conv"]


def _space(granularity: str, technique: str = "channel_pruning") -> tuple[SearchSpace, dict]:
    zoo = build_zoo_model("residual_cnn")
    config = StudyConfig(task="digits", techniques=(technique,), granularity=granularity)
    space = build_space(config, zoo.model)
    return space, space.units


def test_per_block_draws_one_ratio_per_block_for_all_its_layers() -> None:
    space, units = _space("per-block")
    assert set(units["channel_pruning"]) == {"block1", "block2", "block3"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"channel_pruning.on": True})
    trial = study.ask()
    plan = space.sample(trial)
    step = plan.step("channel_pruning")
    assert step is not None
    per_layer = step.params[PER_LAYER]
    # res_a and res_b are in block2: one draw for both.
    assert per_layer["res_a"]["ratio"] == per_layer["res_b"]["ratio"]
    assert per_layer["res_a"]["ratio"] == trial.params["channel_pruning.ratio@block2"]
    assert "ratio" not in step.params  # no global ratio at this granularity
    assert "importance" in step.params  # not a per-unit parameter: still global


def test_per_layer_channel_pruning_draws_one_ratio_per_group() -> None:
    _, units = _space("per-layer")
    # stem and res_b feed one Add: one group, so one ratio.
    assert units["channel_pruning"] == {"stem": ["stem", "res_b"], "res_a": ["res_a"], "fc": ["fc"]}


def test_per_layer_quantization_is_mixed_precision_and_recipes_stay_float() -> None:
    zoo = build_zoo_model("residual_cnn")
    config = StudyConfig(
        task="digits", granularity={"quantization": "per-layer", "lowrank": "per-block"}
    )
    space = build_space(config, zoo.model)
    assert set(space.units["quantization"]) == {"stem", "res_a", "res_b", "fc", "probs"}
    study = optuna.create_study()
    for recipe in space.recipe_params(RECIPE_SETTINGS):
        study.enqueue_trial(recipe["params"])
        plan = space.sample(study.ask())
        quant = plan.step("quantization").params
        assert "mode" not in quant
        assert {v["precision"] for v in quant[PER_LAYER].values()} == {"float"}
        if recipe["technique"] == "lowrank":
            lowrank = plan.step("lowrank").params[PER_LAYER]
            assert {v["rank_ratio"] for v in lowrank.values()} == {0.5}


def test_plan_summary_condenses_per_layer_settings() -> None:
    step = Step("q", {PER_LAYER: {"a": {"precision": "a8w8"}, "b": {"precision": "float"}}})
    assert step.short() == "q(precision=a8w8:1|float:1)"
    step = Step("p", {"importance": "l1", PER_LAYER: {"a": {"ratio": 0.1}, "b": {"ratio": 0.5}}})
    assert step.short() == "p(importance=l1,ratio=0.1..0.5@2)"


@pytest.mark.parametrize(
    ("granularity", "message"),
    [
        ("per-blok", "--granularity: unknown granularity 'per-blok'"),
        ({"pruning": "per-layer"}, "granularity.pruning: unknown technique"),
        ({"lowrank": "fine"}, "granularity.lowrank: unknown granularity 'fine'"),
    ],
)
def test_bad_granularity_is_refused(granularity: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        StudyConfig(task="digits", granularity=granularity).validate("study.toml")


def test_every_technique_declares_per_unit_parameters_within_its_ranges() -> None:
    for technique in all_techniques():
        assert technique.layer_params, technique.name
        for key in technique.global_only:
            assert key in technique.default_ranges
    assert get_technique("quantization").global_only == ("mode",)

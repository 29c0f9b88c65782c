"""Channel pruning on real architectures: residual groups, depthwise blocks, skips."""

from __future__ import annotations

import numpy as np
from spaces_zoo import build_zoo_model

from devicefit.evaluators.tflite_predict import predict
from devicefit.spaces.convert import to_tflite
from devicefit.spaces.graph import dependency_graph
from devicefit.spaces.macs import keras_macs
from devicefit.spaces.pruning import ChannelPruning


def test_half_of_resnet50_channels_remove_at_least_40_percent_of_macs() -> None:
    zoo = build_zoo_model("resnet50")
    applied = ChannelPruning().rewrite(zoo.model, {"ratio": 0.5, "importance": "l1"})
    pruned = applied.model
    before = keras_macs(zoo.model, zoo.input_shape)
    after = keras_macs(pruned, zoo.input_shape)
    assert after <= 0.6 * before, (before, after)
    # Inside the residual groups too: the shortcut and the last conv of each first
    # block feed the same Add, and both lose the same half.
    for block in ("conv2_block1", "conv3_block1", "conv5_block1"):
        short = pruned.get_layer(f"{block}_0_conv").filters
        last = pruned.get_layer(f"{block}_3_conv").filters
        original = zoo.model.get_layer(f"{block}_3_conv").filters
        assert short == last == original // 2, (block, short, last)
    x = zoo.inputs(count=2)
    out = predict(to_tflite(pruned, zoo.input_shape), x)
    assert out.shape == (2, 10) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, np.asarray(pruned(x, training=False)), atol=1e-4)


def test_resnet50_groups_follow_the_residual_stages() -> None:
    graph = dependency_graph(build_zoo_model("resnet50").model)
    stage = graph.group_of("conv3_block1_add")
    assert stage is not None and not stage.frozen
    producers = set(stage.layers("out"))
    # One group per stage: the projection shortcut and every block's last conv.
    assert {"conv3_block1_0_conv", *(f"conv3_block{i}_3_conv" for i in (1, 2, 3, 4))} == producers
    assert "conv4_block1_1_conv" in stage.layers("in")


def test_mobilenet_v2_prunes_expansions_through_depthwise_layers() -> None:
    zoo = build_zoo_model("mobilenet_v2")
    pruned = ChannelPruning().rewrite(zoo.model, {"ratio": 0.5, "importance": "bn_scale"}).model
    original = zoo.model.get_layer("block_3_expand").filters
    assert pruned.get_layer("block_3_expand").filters == original // 2
    dw = pruned.get_layer("block_3_depthwise").get_weights()[0]
    assert dw.shape[2] == original // 2
    assert keras_macs(pruned, zoo.input_shape) < 0.6 * keras_macs(zoo.model, zoo.input_shape)
    x = zoo.inputs(count=2)
    out = predict(to_tflite(pruned, zoo.input_shape), x)
    np.testing.assert_allclose(out, np.asarray(pruned(x, training=False)), atol=1e-4)


def test_unet_skip_concatenation_and_transposed_conv_are_pruned() -> None:
    zoo = build_zoo_model("unet")
    pruned = ChannelPruning().rewrite(zoo.model, {"ratio": 0.5}).model
    assert pruned.get_layer("enc1").filters == 4 and pruned.get_layer("up").filters == 4
    # dec reads [up (4 kept of 8), enc1 (4 kept of 8)] side by side.
    assert pruned.get_layer("dec").get_weights()[0].shape[2] == 8
    x = zoo.inputs(count=2)
    out = predict(to_tflite(pruned, zoo.input_shape), x)
    np.testing.assert_allclose(out, np.asarray(pruned(x, training=False)), atol=1e-4)

"""Graph rewriting, channel chains and MAC counting."""

from __future__ import annotations

import numpy as np
import pytest
from spaces_zoo import build_zoo_model

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.chains import chain_indices, channel_chains
from devicefit.spaces.graph import as_functional, copy_model, graph_view, rebuild
from devicefit.spaces.macs import keras_macs

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers


def _out(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(x, training=False))


def test_sequential_becomes_functional_with_copied_weights() -> None:
    zoo = build_zoo_model("sequential_cnn")
    functional = as_functional(zoo.model)
    assert not isinstance(functional, keras.Sequential)
    assert not {id(v) for v in functional.weights} & {id(v) for v in zoo.model.weights}
    x = zoo.inputs()
    np.testing.assert_allclose(_out(functional, x), _out(zoo.model, x), atol=1e-6)


def test_rebuild_replaces_a_layer_by_a_sequence_and_keeps_the_rest() -> None:
    zoo = build_zoo_model("residual_cnn")
    original = zoo.model.get_layer("res_b")
    kernel, bias = original.get_weights()
    # res_b == (1x1 identity conv to 16) then res_b itself: same function, one more layer.
    ident = L.Conv2D(16, 1, use_bias=False, name="ident")
    same = L.Conv2D.from_config(original.get_config())
    new = rebuild(zoo.model, {"res_b": [ident, same]}, {"ident": [np.eye(16)[None, None]]})
    assert [layer.name for layer in new.layers].count("ident") == 1
    x = zoo.inputs()
    assert not np.allclose(_out(new, x), _out(zoo.model, x), atol=1e-3)  # res_b re-initialized
    new.get_layer("res_b").set_weights([kernel, bias])
    np.testing.assert_allclose(_out(new, x), _out(zoo.model, x), atol=1e-5)
    assert new.layers[0].name == "image"  # the InputLayer keeps its name


def test_rebuild_handles_tensor_ops_and_nested_models() -> None:
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((6,)), L.Dense(6, name="inner_dense")], name="inner")
    inputs = keras.Input((6,))
    y = inner(inputs)
    outputs = L.Dense(2, name="head")(y * 2.0 + inputs)  # keras.ops operations, not layers
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    copy = copy_model(model)
    np.testing.assert_allclose(_out(copy, x), _out(model, x), atol=1e-6)
    assert not {id(v) for v in copy.weights} & {id(v) for v in model.weights}


def test_graph_view_lists_consumers_and_outputs() -> None:
    view = graph_view(build_zoo_model("residual_cnn").model)
    assert sorted(view.consumers["stem"]) == ["add", "res_a"]
    assert view.outputs == {"probs"}
    assert view.shapes["res_a"] == ((None, 10, 10, 16), (None, 10, 10, 16))


def test_chains_skip_coupled_layers_and_say_why() -> None:
    view = graph_view(build_zoo_model("residual_cnn").model)
    chains, reasons = channel_chains(view)
    by_producer = {c.producer: c for c in chains}
    assert by_producer["res_a"].through == ("res_bn", "res_relu")
    assert by_producer["res_a"].consumer == "res_b"
    assert by_producer["fc"].consumer == "probs"
    assert "coupled" in reasons["stem"] and "add" in reasons["stem"]
    assert "Add" in reasons["res_b"]
    assert "model output" in reasons["probs"]


def test_chains_refuse_shared_layers_and_concatenation() -> None:
    inputs = keras.Input((8,))
    shared = L.Dense(8, name="shared")
    a = L.Dense(8, name="a")(inputs)
    b = shared(L.Dense(8, name="b")(inputs))
    c = shared(a)
    out = L.Dense(2, name="out")(L.Concatenate(name="cat")([b, c]))
    _, reasons = channel_chains(graph_view(keras.Model(inputs, out)))
    assert "shared" in reasons["a"] and "shared" in reasons["b"]
    assert "Concatenate" in reasons["shared"] or "shared" in reasons["shared"]


def test_chain_through_flatten_maps_channels_to_flat_positions() -> None:
    inputs = keras.Input((2, 2, 1))
    x = L.Conv2D(3, 1, name="conv")(inputs)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(2, name="fc")(x)
    view = graph_view(keras.Model(inputs, out))
    (chain,), _ = channel_chains(view)
    index = chain_indices(view, chain, np.array([2, 0]))
    np.testing.assert_array_equal(index["fc"], [0, 2, 3, 5, 6, 8, 9, 11])


def test_macs_count_conv_and_dense_by_hand() -> None:
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, strides=2, padding="same")(inputs)  # 4*4 * 3*3*3*4 = 1728
    x = L.DepthwiseConv2D(3, padding="same")(x)  # 4*4 * 3*3*4 = 576
    x = L.Flatten()(x)
    out = L.Dense(5)(x)  # 64*5 = 320
    assert keras_macs(keras.Model(inputs, out)) == 1728 + 576 + 320


def test_macs_need_input_shape_for_unknown_sizes() -> None:
    zoo = build_zoo_model("srcnn")
    with pytest.raises(ValueError, match="input_shape"):
        keras_macs(zoo.model)
    per_pixel = 9 * 9 * 1 * 32 + 32 * 16 + 5 * 5 * 16 * 1
    assert keras_macs(zoo.model, (1, 16, 16, 1)) == 16 * 16 * per_pixel


def test_rebuild_keeps_multiple_named_inputs_and_outputs() -> None:
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    joined = L.Concatenate()([L.Dense(5, name="da")(a), b])
    model = keras.Model({"a": a, "b": b}, [L.Dense(2, name="o1")(joined), joined])
    copy = copy_model(model)
    x = {"a": np.ones((2, 4), np.float32), "b": np.ones((2, 3), np.float32)}
    for new, old in zip(copy(x), model(x), strict=True):
        np.testing.assert_allclose(np.asarray(new), np.asarray(old), atol=1e-6)

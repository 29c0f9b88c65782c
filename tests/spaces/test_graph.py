"""Graph rewriting, the channel-dependency graph and MAC counting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from spaces_zoo import build_zoo_model

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.graph import DependencyGraph, Group, dependency_graph, graph_view
from devicefit.spaces.macs import keras_macs
from devicefit.spaces.rebuild import as_functional, copy_model, rebuild

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


def _group(graph: DependencyGraph, producer: str) -> Group:
    group = graph.group_of(producer)
    assert group is not None, producer
    return group


def test_residual_add_couples_its_producers_into_one_group() -> None:
    graph = dependency_graph(build_zoo_model("residual_cnn").model)
    trunk = _group(graph, "stem")
    assert trunk is _group(graph, "res_b") is _group(graph, "add")
    assert sorted(trunk.layers("out")) == ["res_b", "stem"]
    assert sorted(trunk.layers("in")) == ["fc", "res_a"]
    inner = _group(graph, "res_a")
    assert inner.layers("pass") == ["res_bn", "res_relu"] and inner.layers("in") == ["res_b"]
    assert {g.name for g in graph.prunable()} == {trunk.name, "res_a", "fc"}
    assert any("model output" in why for why in _group(graph, "probs").frozen)
    assert "model input" in _group(graph, "image").frozen[0]


def test_shared_layers_freeze_what_they_touch() -> None:
    inputs = keras.Input((8,))
    shared = L.Dense(8, name="shared")
    a = L.Dense(8, name="a")(inputs)
    b = shared(L.Dense(8, name="b")(inputs))
    c = shared(a)
    out = L.Dense(2, name="out")(L.Concatenate(name="cat")([b, c]))
    graph = dependency_graph(keras.Model(inputs, out))
    assert "shared" in graph.notes["shared"]
    for name in ("a", "b", "shared"):
        assert any("shared" in why for why in _group(graph, name).frozen), name
    assert not graph.prunable()


def test_flatten_maps_kept_channels_to_every_position() -> None:
    inputs = keras.Input((2, 2, 1))
    x = L.Conv2D(3, 1, name="conv")(inputs)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(2, name="fc")(x)
    graph = dependency_graph(keras.Model(inputs, out))
    group = _group(graph, "conv")
    index = graph.index(graph.in_layout["fc"], {group.id: np.array([0, 2])})
    np.testing.assert_array_equal(index, [0, 2, 3, 5, 6, 8, 9, 11])


def test_concatenate_places_each_group_at_its_offset() -> None:
    inputs = keras.Input((5, 5, 2))
    a = L.Conv2D(4, 1, name="a")(inputs)
    b = L.Conv2D(6, 1, name="b")(inputs)
    x = L.Concatenate(name="cat")([a, b])
    x = L.BatchNormalization(name="bn")(x)
    out = L.Conv2D(3, 1, name="head")(x)
    graph = dependency_graph(keras.Model(inputs, out))
    ga, gb = _group(graph, "a"), _group(graph, "b")
    assert ga is not gb
    assert [(m.layer, m.role, m.offset) for m in gb.members] == [
        ("b", "out", 0),
        ("bn", "pass", 4),
        ("head", "in", 4),
    ]
    index = graph.index(graph.in_layout["head"], {gb.id: np.array([1, 3])})
    np.testing.assert_array_equal(index, [0, 1, 2, 3, 5, 7])


def test_unknown_layer_freezes_only_its_own_channels() -> None:
    class Mystery(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            return x[..., ::-1]  # mixes channel order: pruning through it would be wrong

    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, name="c1")(inputs)
    x = Mystery(name="mystery")(x)
    x = L.Conv2D(8, 3, name="c2")(x)
    out = L.Conv2D(2, 1, name="c3")(x)
    graph = dependency_graph(keras.Model(inputs, out))
    assert "Mystery 'mystery'" in graph.notes["mystery"]
    assert "reaches Mystery" in _group(graph, "c1").frozen[0]
    assert [g.name for g in graph.prunable()] == ["c2"]


def test_macs_count_conv_and_dense_by_hand() -> None:
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, strides=2, padding="same")(inputs)  # 4*4 * 3*3*3*4 = 1728
    x = L.DepthwiseConv2D(3, padding="same")(x)  # 4*4 * 3*3*4 = 576
    x = L.Flatten()(x)
    out = L.Dense(5)(x)  # 64*5 = 320
    assert keras_macs(keras.Model(inputs, out)) == 1728 + 576 + 320


def test_macs_of_a_transposed_conv_count_every_scattered_kernel() -> None:
    inputs = keras.Input((4, 4, 3))
    out = L.Conv2DTranspose(5, 2, strides=2)(inputs)  # 4*4 input pixels * 2*2*3*5 = 960
    assert keras_macs(keras.Model(inputs, out)) == 960


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

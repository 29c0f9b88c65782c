"""Channel pruning: lowest-L1 filters go, with their BatchNorm entries and next-layer inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from spaces_zoo import build_zoo_model

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.pruning import ChannelPruning, kept_count, l1_ranking

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers


@pytest.mark.parametrize(
    ("channels", "ratio", "kept"),
    [
        (16, 0.0, 16),
        (16, 0.5, 8),
        (16, 0.7, 4),
        (64, 0.3, 44),
        (6, 0.5, 3),
        (8, 0.1, 8),
        (3, 0.9, 1),
    ],
)
def test_kept_count_rounds_to_multiples_of_four_on_wide_layers(
    channels: int, ratio: float, kept: int
) -> None:
    assert kept_count(channels, ratio, 4) == kept


def test_l1_ranking_orders_filters_by_norm() -> None:
    kernel = np.zeros((3, 3, 2, 4), np.float32)
    kernel[..., 0] = 0.5
    kernel[..., 1] = -2.0
    kernel[..., 3] = 1.0
    np.testing.assert_array_equal(l1_ranking(kernel), [1, 3, 0, 2])


def _conv_flatten_dense() -> keras.Model:
    inputs = keras.Input((3, 3, 2))
    x = L.Conv2D(4, 2, activation="relu", name="conv")(inputs)  # -> (2, 2, 4)
    x = L.Flatten(name="flat")(x)
    outputs = L.Dense(3, name="fc")(x)
    model = keras.Model(inputs, outputs)
    kernel, bias = model.get_layer("conv").get_weights()
    scale = np.array([0.1, 3.0, 0.2, 2.0], np.float32)  # filters 1 and 3 have the largest L1
    kernel = np.abs(kernel) * scale
    model.get_layer("conv").set_weights([kernel, bias + 0.1])
    return model


def test_pruning_keeps_the_largest_filters_and_the_matching_flattened_inputs() -> None:
    model = _conv_flatten_dense()
    kernel, bias = model.get_layer("conv").get_weights()
    fc_kernel, fc_bias = model.get_layer("fc").get_weights()
    pruned = ChannelPruning().rewrite(model, {"ratio": 0.5}).model
    new_kernel, new_bias = pruned.get_layer("conv").get_weights()
    np.testing.assert_array_equal(new_kernel, kernel[..., [1, 3]])
    np.testing.assert_array_equal(new_bias, bias[[1, 3]])
    # Flatten of (2, 2, 4): position p, channel c at p * 4 + c.
    rows = [p * 4 + c for p in range(4) for c in (1, 3)]
    np.testing.assert_array_equal(pruned.get_layer("fc").get_weights()[0], fc_kernel[rows])
    np.testing.assert_array_equal(pruned.get_layer("fc").get_weights()[1], fc_bias)


def test_pruned_model_equals_the_original_with_those_filters_zeroed() -> None:
    model = _conv_flatten_dense()
    pruned = ChannelPruning().rewrite(model, {"ratio": 0.5}).model
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., [0, 2]] = 0.0
    bias[[0, 2]] = 0.0  # relu(0) = 0: the removed channels contribute nothing
    model.get_layer("conv").set_weights([kernel, bias])
    x = np.random.default_rng(0).normal(size=(5, 3, 3, 2)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(pruned(x)), np.asarray(model(x)), atol=1e-5)


def test_batchnorm_and_next_conv_follow_the_pruned_filters() -> None:
    zoo = build_zoo_model("sequential_cnn")
    applied = ChannelPruning().rewrite(zoo.model, {"ratio": 0.5})
    kernel = zoo.model.get_layer("conv1").get_weights()[0]
    keep = np.sort(l1_ranking(kernel)[:8])
    np.testing.assert_array_equal(
        applied.model.get_layer("conv1").get_weights()[0], kernel[..., keep]
    )
    for old, new in zip(
        zoo.model.get_layer("bn1").get_weights(),
        applied.model.get_layer("bn1").get_weights(),
        strict=True,
    ):
        np.testing.assert_array_equal(new, old[keep])
    conv2_old = zoo.model.get_layer("conv2").get_weights()[0]
    conv2_keep = np.sort(l1_ranking(conv2_old)[:8])
    conv2_new = applied.model.get_layer("conv2").get_weights()[0]
    np.testing.assert_array_equal(conv2_new, conv2_old[:, :, keep][..., conv2_keep])


def _kept_columns(old: np.ndarray, new: np.ndarray) -> list[int]:
    """Which of the original filters (last axis) the pruned kernel kept, in order."""
    return [
        next(j for j in range(old.shape[-1]) if np.array_equal(old[..., j], new[..., i]))
        for i in range(new.shape[-1])
    ]


def test_residual_group_loses_the_same_channels_in_every_branch() -> None:
    zoo = build_zoo_model("residual_cnn")
    model = zoo.model
    applied = ChannelPruning().rewrite(
        model, {"ratio": 0.0, "per_layer": {"res_b": {"ratio": 0.5}}}
    )
    pruned = applied.model
    assert pruned.get_layer("stem").filters == pruned.get_layer("res_b").filters == 8
    assert pruned.get_layer("res_a").filters == 16  # its own group, ratio 0
    keep = _kept_columns(
        model.get_layer("stem").get_weights()[0], pruned.get_layer("stem").get_weights()[0]
    )
    assert keep == _kept_columns(
        model.get_layer("res_b").get_weights()[0], pruned.get_layer("res_b").get_weights()[0]
    )
    assert any("stem: kept 8/16 channels of stem, res_b" in note for note in applied.notes)
    # Zeroing those channels in both branches of the original gives the same function:
    # relu(0) and 0 + 0 carry nothing into res_a or the head.
    drop = np.setdiff1d(np.arange(16), keep)
    for name in ("stem", "res_b"):
        kernel, bias = model.get_layer(name).get_weights()
        kernel[..., drop], bias[drop] = 0.0, 0.0
        model.get_layer(name).set_weights([kernel, bias])
    x = zoo.inputs()
    np.testing.assert_allclose(np.asarray(pruned(x)), np.asarray(model(x)), atol=1e-5)


def test_ratio_outside_the_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="ratio"):
        ChannelPruning().rewrite(build_zoo_model("mlp").model, {"ratio": 1.0})


def test_pruning_passes_through_depthwise_convolutions() -> None:
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 1, name="expand")(inputs)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = L.ReLU(6.0, name="relu6")(x)
    outputs = L.Conv2D(4, 1, name="project")(x)
    model = keras.Model(inputs, outputs)
    applied = ChannelPruning().rewrite(model, {"ratio": 0.5})
    keep = np.sort(l1_ranking(model.get_layer("expand").get_weights()[0])[:4])
    dw_old = model.get_layer("dw").get_weights()[0]
    np.testing.assert_array_equal(
        applied.model.get_layer("dw").get_weights()[0], dw_old[:, :, keep]
    )
    kernel, bias = model.get_layer("expand").get_weights()
    drop = np.setdiff1d(np.arange(8), keep)
    kernel[..., drop], bias[drop] = 0.0, 0.0
    model.get_layer("expand").set_weights([kernel, bias])
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(applied.model(x)), np.asarray(model(x)), atol=1e-5)


def _passthrough_model() -> keras.Model:
    """Channel 0 of the first conv is a centred delta carrying the image (tiny L1),
    the other filters are larger but feed the next layer with small weights."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((None, None, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="first"),
            keras.layers.Conv2D(1, 3, padding="same", name="out"),
        ]
    )
    kernel, bias = model.layers[0].get_weights()
    kernel[..., 0] = 0.0
    kernel[1, 1, 0, 0] = 1.0
    kernel[..., 1:] = np.random.default_rng(0).normal(0, 0.5, kernel[..., 1:].shape)
    model.layers[0].set_weights([kernel, bias * 0])
    out, out_bias = model.layers[1].get_weights()
    out[..., 1:, :] *= 0.01
    out[..., 0, :] = 0.0
    out[1, 1, 0, 0] = 1.0
    model.layers[1].set_weights([out, out_bias * 0])
    return model


def test_activation_importance_keeps_the_channel_that_carries_the_signal() -> None:
    model = _passthrough_model()
    samples = np.random.default_rng(1).random((8, 12, 12, 1), dtype=np.float32)
    by_l1 = ChannelPruning().rewrite(model, {"ratio": 0.5, "importance": "l1"})
    technique = ChannelPruning()
    technique.prepare(samples)
    by_activation = technique.rewrite(model, {"ratio": 0.5, "importance": "activation"})

    def error(applied: Any) -> float:
        return float(np.abs(applied.model.predict(samples, verbose=0) - samples).mean())

    # The original passes the image through almost exactly; L1 ranking drops the
    # delta filter (L1 = 1, the smallest) and loses the image, activation keeps it.
    assert error(by_activation) < 0.05 < error(by_l1)
    assert any("by activation" in note for note in by_activation.notes)


def test_activation_importance_without_samples_falls_back_to_l1() -> None:
    applied = ChannelPruning().rewrite(
        _passthrough_model(), {"ratio": 0.5, "importance": "activation"}
    )
    assert any("no samples given" in note for note in applied.notes)


def test_the_sensitivity_profile_ranks_channels_by_activation_as_trials_do() -> None:
    """The profile (and the plans built from it) prune by the ranking a trial's rewrite
    uses when given samples: on the pass-through model, L1 ranking would lose the image."""
    from devicefit.evaluators.metrics import get_metric
    from devicefit.spaces.base import PER_LAYER, ConvertContext
    from devicefit.spaces.sensitivity import SensitivityJob, score_jobs

    model = _passthrough_model()
    samples = np.random.default_rng(1).random((8, 12, 12, 1), dtype=np.float32)
    metric = get_metric("psnr")
    jobs = [
        SensitivityJob("first", ("first",), "channel_pruning", level, ratio)
        for level, ratio in (("identity", 0.0), ("strong", 0.5))
    ]
    context = ConvertContext((1, 12, 12, 1), samples)
    techniques = {"channel_pruning": ChannelPruning()}
    _, strong = score_jobs(model, jobs, techniques, samples, samples, metric, context)
    by_l1 = ChannelPruning().rewrite(model, {"ratio": 0.0, PER_LAYER: {"first": {"ratio": 0.5}}})
    reference = float(metric(samples, model.predict(samples, verbose=0)))
    l1_drop = metric.drop(
        reference, float(metric(samples, by_l1.model.predict(samples, verbose=0)))
    )
    assert strong.error is None and strong.drop is not None
    assert strong.drop < 1.0 and l1_drop > 10.0


def test_activation_ranking_runs_one_inference_pass_per_model_and_samples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker builds many candidates from the same untouched model: the second one reuses
    the first one's activations, and prunes exactly as a fresh computation would; other
    weights or other samples get a pass of their own."""
    from devicefit.spaces import importance

    passes = []
    real_predict = importance.eager_predict

    def predict(model: keras.Model, x: np.ndarray) -> Any:
        passes.append(model)
        return real_predict(model, x)

    monkeypatch.setattr(importance, "eager_predict", predict)
    monkeypatch.setattr(importance, "_MEANS", type(importance._MEANS)())
    samples = np.random.default_rng(1).random((8, 12, 12, 1), dtype=np.float32)

    def pruned(model: keras.Model, data: np.ndarray) -> list[np.ndarray]:
        technique = ChannelPruning()
        technique.prepare(data)
        applied = technique.rewrite(model, {"ratio": 0.5, "importance": "activation"})
        return applied.model.get_weights()

    untouched = _passthrough_model()

    def copy() -> keras.Model:  # as a trial copies the task's model
        clone = keras.models.clone_model(untouched)
        clone.set_weights(untouched.get_weights())
        return clone

    first = pruned(copy(), samples)
    assert len(passes) == 1
    again = pruned(copy(), samples)  # same architecture and weights
    assert len(passes) == 1
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)

    # The same architecture with other weights: a pass of its own.
    other = copy()
    kernel, bias = other.get_layer("first").get_weights()
    kernel[0, 0, 0, 7] += 1e-3
    other.get_layer("first").set_weights([kernel, bias])
    pruned(other, samples)
    assert len(passes) == 2
    pruned(copy(), samples[:4])  # other samples
    assert len(passes) == 3


def test_a_model_fingerprint_changes_with_any_weight_the_wiring_or_the_samples() -> None:
    from devicefit.spaces.importance import fingerprint

    samples = np.random.default_rng(1).random((4, 12, 12, 1), dtype=np.float32)
    model = _passthrough_model()
    base = fingerprint(model, samples)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    assert fingerprint(clone, samples) == base

    weights = model.get_weights()
    weights[-1] = weights[-1] + 1e-6  # one bias of the last layer
    changed = keras.models.clone_model(model)
    changed.set_weights(weights)
    assert fingerprint(changed, samples) != base
    assert fingerprint(model, samples + 1e-6) != base

    # The same two layers and weights, called in the other order.
    inputs = keras.Input((None, None, 1))
    a = keras.layers.Conv2D(1, 3, padding="same", name="a")
    b = keras.layers.Conv2D(1, 3, padding="same", name="b")
    ab = keras.Model(inputs, b(a(inputs)))
    ba = keras.Model(inputs, a(b(inputs)))
    assert fingerprint(ab, samples) != fingerprint(ba, samples)

    # Only a BatchNorm's moving statistics differ (no trainable weight does).
    def normed(variance: float) -> keras.Model:
        inputs = keras.Input((12, 12, 1))
        norm = keras.layers.BatchNormalization(name="bn")
        net = keras.Model(inputs, norm(inputs))
        norm.moving_variance.assign(np.full(1, variance, np.float32))
        return net

    assert fingerprint(normed(1.0), samples) != fingerprint(normed(2.0), samples)


def test_a_model_that_cannot_say_its_architecture_is_ranked_but_never_cached() -> None:
    from devicefit.spaces import importance

    class Opaque(keras.layers.Layer):  # an argument Keras cannot record, no get_config
        def __init__(self, function: Any) -> None:
            super().__init__()
            self.function = function

        def call(self, x: Any) -> Any:
            return self.function(x)

    inputs = keras.Input((12, 12, 1))
    model = keras.Model(inputs, Opaque(lambda x: x * 2.0)(inputs))
    samples = np.random.default_rng(1).random((4, 12, 12, 1), dtype=np.float32)
    assert importance.fingerprint(model, samples) is None
    before = dict(importance._MEANS)
    means = importance._source_means(model, [model.layers[-1].name], samples)
    np.testing.assert_allclose(
        means[model.layers[-1].name], [2 * np.abs(samples).mean()], rtol=1e-5
    )
    assert dict(importance._MEANS) == before


def test_channels_are_pruned_through_reshapes_into_the_dense_head() -> None:
    zoo = build_zoo_model("reshape_head")
    model = zoo.model
    applied = ChannelPruning().rewrite(model, {"ratio": 0.5})
    pruned = applied.model
    kernel = model.get_layer("conv").get_weights()[0]
    keep = np.sort(l1_ranking(kernel)[:4])
    np.testing.assert_array_equal(pruned.get_layer("conv").get_weights()[0], kernel[..., keep])
    # (64, 8) keeps the channel axis: the per-token Dense loses the same input rows.
    token_kernel = model.get_layer("per_token").get_weights()[0]
    token_new = pruned.get_layer("per_token").get_weights()[0]
    token_keep = _kept_columns(token_kernel[keep], token_new)
    assert token_new.shape == (4, 3) and len(set(token_keep)) == 3
    # The flattening Reshape: token p, unit u at p * 6 + u, as after a Flatten.
    rows = [p * 6 + u for p in range(64) for u in token_keep]
    np.testing.assert_array_equal(
        pruned.get_layer("logits").get_weights()[0],
        model.get_layer("logits").get_weights()[0][rows],
    )
    assert pruned.get_layer("to_tokens").output.shape[1:] == (64, 4)
    assert pruned.get_layer("to_vector").output.shape[1:] == (64 * 3,)


def test_a_reshape_that_mixes_channels_with_positions_freezes_them() -> None:
    inputs = keras.Input((4, 4, 6))
    x = L.Conv2D(6, 1, name="conv")(inputs)
    x = L.Reshape((4, 24), name="rows")(x)  # (H, W*C): channels and positions mixed
    outputs = L.Dense(2, name="fc")(L.Flatten()(x))
    model = keras.Model(inputs, outputs)
    applied = ChannelPruning().rewrite(model, {"ratio": 0.5})
    assert applied.model.get_layer("conv").get_weights()[0].shape[-1] == 6
    explained = ChannelPruning().explain(model)
    assert not explained["conv"][0] and "mixes channels with other axes" in explained["conv"][1]

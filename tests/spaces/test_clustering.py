"""Weight clustering: k-means weight sharing that survives fine-tuning and keeps zeros."""

from __future__ import annotations

import numpy as np
from spaces_zoo import build_zoo_model

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.clustering import WeightClustering, kmeans_1d, shared_values
from devicefit.spaces.rebuild import copy_model

silence_tensorflow()

import keras  # noqa: E402


def test_kmeans_finds_well_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(c, 0.01, 50) for c in (-1.0, 0.2, 3.0)])
    index = kmeans_1d(values, 3)
    for start in (0, 50, 100):
        assert len(set(index[start : start + 50])) == 1
    assert len(set(index)) == 3


def test_shared_values_are_cluster_means_and_zeros_stay_zero() -> None:
    values = np.array([0.0, 1.0, 3.0, 10.0, 12.0], np.float32)
    index = np.array([0, 0, 0, 1, 1])
    np.testing.assert_allclose(shared_values(values, index), [0.0, 2.0, 2.0, 11.0, 11.0])


def test_finalize_leaves_at_most_two_to_the_bits_values_per_kernel() -> None:
    model = copy_model(build_zoo_model("sequential_cnn").model)
    WeightClustering().finalize(model, {"bits": 2, "per_layer": {"fc1": {"bits": 3}}})
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            unique = len(np.unique(layer.kernel.numpy()))
            assert unique <= (8 if layer.name == "fc1" else 4), (layer.name, unique)
            assert unique >= 2


def test_sharing_survives_fine_tuning() -> None:
    model = copy_model(build_zoo_model("mlp").model)
    technique = WeightClustering()
    callbacks = technique.training_callbacks(model, {"bits": 2}, total_steps=10)
    assert callbacks
    before = model.get_layer("d1").kernel.numpy().copy()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 48)), rng.normal(size=(40, 3))
    model.fit(x, y, epochs=1, batch_size=4, callbacks=callbacks, verbose=0)
    after = model.get_layer("d1").kernel.numpy()
    assert len(np.unique(after)) <= 4
    assert not np.allclose(np.unique(after), np.unique(before))  # the shared values trained

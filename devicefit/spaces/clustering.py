"""Weight clustering: every kernel shares ``2**bits`` values (k-means per layer).

As in TF-MOT's clustering API (which rejects Keras 3 models), each kernel's
weights are grouped by 1-D k-means with centroids initialised evenly between
the smallest and largest weight; fine-tuning then keeps the sharing: after every
batch each cluster's weights are replaced by their mean, so the optimizer moves
the shared values and never splits a cluster. The file stores the weights as
usual (dense float), so the gain is in compressed size (a clustered file zips to
about ``bits/32`` of the original) and on runtimes with palette weights.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import Applied, WeightsTechnique, layer_value
from devicefit.spaces.params import IntRange
from devicefit.spaces.sparsity import explain_kernels, prunable_kernels

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()


def kmeans_1d(values: np.ndarray, clusters: int, iterations: int = 20) -> np.ndarray:
    """Cluster index of every value (same shape), by Lloyd's algorithm in 1-D.

    1-D clusters are intervals, so each step is a sort-free ``searchsorted``
    against the midpoints between sorted centroids.

    Args:
        values: the weights to cluster, any shape.
        clusters: how many clusters (shared values); below 2 puts every value in cluster 0.
        iterations: the most Lloyd steps taken; it stops once the centroids settle.

    Returns:
        int32 array shaped like ``values``: each value's cluster, numbered from the smallest
        centroid up (all 0 when every value is equal).
    """
    flat = values.ravel().astype(np.float64)
    low, high = float(flat.min()), float(flat.max())
    if clusters < 2 or high == low:
        return np.zeros(values.shape, dtype=np.int32)
    centroids = np.linspace(low, high, clusters)
    index = np.zeros(flat.shape, dtype=np.int64)
    for _ in range(iterations):
        index = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, flat)
        sums = np.bincount(index, weights=flat, minlength=clusters)
        counts = np.bincount(index, minlength=clusters)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        moved.sort()
        if np.allclose(moved, centroids):
            break
        centroids = moved
    return index.reshape(values.shape).astype(np.int32)


def shared_values(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Each weight replaced by the mean of its cluster; exact zeros stay zero, so
    clustering keeps the sparsity magnitude pruning made (as TF-MOT's
    sparsity-preserving clustering).

    Args:
        values: the weights.
        index: each weight's cluster (``kmeans_1d``), shaped like ``values``.

    Returns:
        The new weights, shaped and typed like ``values``: each nonzero one its cluster's
        mean over the cluster's nonzero weights.
    """
    flat, idx = values.ravel(), index.ravel()
    nonzero = flat != 0
    sums = np.bincount(idx[nonzero], weights=flat[nonzero], minlength=int(idx.max()) + 1)
    counts = np.maximum(np.bincount(idx[nonzero], minlength=int(idx.max()) + 1), 1)
    shared = np.where(nonzero, (sums / counts)[idx], 0.0)
    return shared.reshape(values.shape).astype(values.dtype)


class KeepClusters(keras.callbacks.Callback):
    """After every training batch, snap each clustered kernel back to its cluster means."""

    def __init__(self, kernels: list[tuple[Any, np.ndarray]]) -> None:
        super().__init__()
        self.kernels = kernels

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        for variable, index in self.kernels:
            variable.assign(shared_values(np.asarray(variable.numpy()), index))


class WeightClustering(WeightsTechnique):
    """Share ``2**bits`` values per kernel; ``bits`` 0 leaves the weights alone."""

    name = "clustering"
    structural = False
    applied_before_training = True  # clustered once, before the first step
    default_ranges = {"bits": IntRange(0, 8)}
    layer_params = {"bits": IntRange(0, 8)}
    iterations: ClassVar[int] = 20

    def identity_params(self) -> dict[str, Any]:
        return {"bits": 0}

    def strong_params(self) -> dict[str, Any]:
        return {"bits": 2}

    def _cluster(self, model: keras.Model, params: dict[str, Any]) -> list[tuple[Any, Any]]:
        """Cluster every kernel in place; (variable, cluster index) of each clustered one."""
        done = []
        for label, variable in prunable_kernels(model):
            bits = int(layer_value(params, label.split(".", 1)[0], "bits", 0))
            if not 0 <= bits <= 16:
                raise ValueError(f"{self.name}.bits must be in [0, 16], got {bits} for {label}")
            values = np.asarray(variable.numpy())
            if bits == 0 or 2**bits >= values.size:
                continue
            index = kmeans_1d(values, 2**bits, self.iterations)
            variable.assign(shared_values(values, index))
            done.append((variable, index))
        return done

    def training_callbacks(
        self, model: keras.Model, params: dict[str, Any], total_steps: int
    ) -> list[keras.callbacks.Callback]:
        if total_steps <= 0:
            return []
        kernels = self._cluster(model, params)
        return [KeepClusters(kernels)] if kernels else []

    def finalize(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        """Cluster (again: fine-tuning moved the shared values, never the membership)."""
        done = self._cluster(model, params)
        notes = [
            f"{v.path if hasattr(v, 'path') else v.name}: "
            f"{len(np.unique(np.asarray(v.numpy())))} shared values"
            for v, _ in done
        ]
        return Applied(model, notes or ["bits 0: weights unchanged"])

    def explain(self, model: keras.Model) -> dict[str, tuple[bool, str]]:
        return explain_kernels(model, lambda size: f"{size} kernel weights shared by k-means")

"""BatchNorm statistics re-estimated after a graph rewrite (adaptive BN: Li et al.,
"EagleEye: Fast Sub-net Evaluation for Efficient Neural Network Pruning", ECCV 2020).

A rewrite that removes channels, branches or rank leaves every BatchNorm after it
normalizing with the moving mean and variance of the untouched model's activations, which
no longer hold: the candidate scores near chance before fine-tuning even where a few
epochs bring it back within the budget, so its drop before fine-tuning says little about
the drop after it. The greedy plans rank steps on that drop (the sensitivity profile) and
the rejection of hopeless candidates reads it, so both score a rewritten model after one
pass over a few hundred training inputs in training mode: the statistics re-estimated, no
weight changed. A model that was not rewritten keeps its own statistics (the untouched
model and the identity settings score exactly as before).
"""

from __future__ import annotations

from typing import Any

import numpy as np

BATCH = 128  # inputs per forward pass; the statistics are the mean over the passes


def rewritten(original: Any, model: Any) -> bool:
    """Whether ``model`` differs from ``original`` in its layers or weight shapes, as every
    graph rewrite that removes something does (the identity settings leave both alike)."""
    shapes = [tuple(w.shape) for w in model.weights]
    return shapes != [tuple(w.shape) for w in original.weights]


def recalibrate_batchnorm(model: Any, x: np.ndarray) -> int:
    """Re-estimate the moving mean and variance of ``model``'s trainable BatchNorm layers
    (nested models included) on the inputs ``x``, in place: each pass of ``BATCH`` inputs
    in training mode weighs in equally, and nothing else changes. A frozen BatchNorm
    (``trainable=False``) keeps its statistics, as Keras's training mode does. Returns the
    number of layers re-estimated."""
    import keras

    norms = [
        layer
        for layer in _layers(model)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    if not norms or len(x) == 0:
        return 0
    momenta = [layer.momentum for layer in norms]
    try:
        for number, start in enumerate(range(0, len(x), BATCH)):
            # momentum n/(n+1) makes the moving value the running mean of the n+1 batches
            # seen, the first of them replacing the untouched model's statistics entirely.
            for layer in norms:
                layer.momentum = number / (number + 1)
            model(x[start : start + BATCH], training=True)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
    return len(norms)


def _layers(model: Any) -> list[Any]:
    """Every layer of ``model``, the layers of nested models included."""
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        out += _layers(layer)
    return out

"""BatchNorm statistics re-estimated after a graph rewrite (adaptive BN: Li et al.,
"EagleEye: Fast Sub-net Evaluation for Efficient Neural Network Pruning", ECCV 2020).

A rewrite that removes channels, branches or rank leaves every BatchNorm after it
normalizing with the moving mean and variance of the untouched model's activations, which
no longer hold: the candidate scores near chance before fine-tuning even where a few
epochs bring it back within the budget, so its drop before fine-tuning says little about
the drop after it. The greedy plans rank steps on that drop (the sensitivity profile) and
the rejection of hopeless candidates reads it, so both score a rewritten model after one
pass over a few hundred training inputs in training mode: the statistics re-estimated, no
trained weight changed. Only the layers whose inputs the rewrite changed keep the new
statistics (those before it keep their own), and a model that was not rewritten keeps all
of its own (the untouched model and the identity settings score exactly as before).
"""

from __future__ import annotations

from typing import Any

import numpy as np

BATCH = 128  # inputs per forward pass; the statistics are the mean over the passes


def rewritten(original: Any, model: Any) -> bool:
    """Whether ``model`` differs from ``original`` in its layers or weight shapes, as every
    graph rewrite that removes something does (the identity settings leave both alike).

    Args:
        original: the model before the rewrite.
        model: the model after it.

    Returns:
        True when the two models' weight shapes, in order, differ.
    """
    shapes = [tuple(w.shape) for w in model.weights]
    return shapes != [tuple(w.shape) for w in original.weights]


def recalibrate_batchnorm(model: Any, x: np.ndarray, untouched: Any = None) -> int:
    """Re-estimate the moving mean and variance of ``model``'s trainable BatchNorm layers
    (nested models included) on the inputs ``x``, in place: each pass of ``BATCH`` inputs
    in training mode weighs in equally, and nothing else changes. A frozen BatchNorm
    (``trainable=False``) keeps its statistics, as Keras's training mode does.

    With ``untouched`` (the model ``model`` was rewritten from), a layer whose re-estimated
    statistics are those the untouched model's own layer of that name gets on ``x`` (its
    inputs did not change: it sits before the rewrite) keeps its trained statistics, so a
    rewrite is charged for what it changed only, not for re-estimating on a few inputs.
    A model with the weight shapes of ``untouched`` was not rewritten (the identity
    settings) and keeps all of its statistics.

    Args:
        model: the rewritten Keras model; its BatchNorm statistics change in place.
        x: training inputs to re-estimate on (never the test split); empty changes nothing.
        untouched: the model ``model`` was rewritten from; None keeps every re-estimate.

    Returns:
        The number of layers whose statistics were re-estimated and kept (0 when nothing
        was re-estimated).
    """
    norms = _norms(model)
    if not norms or len(x) == 0 or (untouched is not None and not rewritten(untouched, model)):
        return 0
    trained = {layer.name: _statistics(layer) for layer in norms}
    _reestimate(model, norms, x)
    if untouched is None:
        return len(norms)
    before = _untouched_statistics(untouched, x)
    kept = 0
    for layer in norms:
        fresh, same = _statistics(layer), before.get(layer.name)
        if same is not None and all(
            a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-7)
            for a, b in zip(fresh, same, strict=True)
        ):
            layer.moving_mean.assign(trained[layer.name][0])
            layer.moving_variance.assign(trained[layer.name][1])
        else:
            kept += 1
    return kept


def _norms(model: Any) -> list[Any]:
    import keras

    return [
        layer
        for layer in _layers(model)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]


def _reestimate(model: Any, norms: list[Any], x: np.ndarray) -> None:
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


def _statistics(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.array(layer.moving_mean), np.array(layer.moving_variance)


_UNTOUCHED: dict[tuple[int, str], tuple[Any, dict[str, tuple[np.ndarray, np.ndarray]]]] = {}


def _untouched_statistics(untouched: Any, x: np.ndarray) -> dict[str, tuple[Any, Any]]:
    """What re-estimating on ``x`` gives the untouched model's layers, by name: computed on
    a copy once per model and inputs in this process (the entry keeps the model, so a
    freed model's reused id cannot hand another its statistics)."""
    from devicefit.spaces.rebuild import clone_with_weights
    from devicefit.tasks.named_inputs import content_digest

    key = (id(untouched), content_digest(x))
    entry = _UNTOUCHED.get(key)
    if entry is None or entry[0] is not untouched:
        copy = clone_with_weights(untouched)
        _reestimate(copy, _norms(copy), x)
        entry = _UNTOUCHED[key] = (untouched, {n.name: _statistics(n) for n in _norms(copy)})
    return entry[1]


def _layers(model: Any) -> list[Any]:
    """Every layer of ``model``, the layers of nested models included."""
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        out += _layers(layer)
    return out

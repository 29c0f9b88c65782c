"""Keras 3 functional-model rewriting shared by the graph-stage techniques.

Every rewrite goes through :func:`rebuild`: the model is cloned with
``keras.models.clone_model`` (fresh layers, so the original is never touched),
chosen layers are swapped for a sequence of new layers through
``call_function``, and weights are copied by layer name afterwards, because a
Keras 3 layer only owns variables once it has been called on a shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from devicefit.errors import TrialFailed
from devicefit.quiet import silence_tensorflow

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()


def as_functional(model: keras.Model) -> keras.Model:
    """A functional model computing the same as ``model`` with fresh layers and copied weights.

    Sequential models have no ``call_function`` support in ``clone_model`` and
    no node graph to analyse, so every rewrite starts from this form.

    Args:
        model: a Sequential or functional Keras model; left untouched.

    Returns:
        The functional model, its input named as ``model``'s.

    Raises:
        TrialFailed: ``model`` is a Sequential model that is not built (no Input layer).
    """
    if not isinstance(model, keras.Sequential):
        return rebuild(model)
    if not model.inputs:
        raise TrialFailed(f"model {model.name!r} is not built (give it an Input layer)")
    source = model.inputs[0]
    inputs = keras.Input(batch_shape=source.shape, dtype=source.dtype, name=_input_name(model))
    x = inputs
    pairs = []
    for layer in model.layers:
        clone = _clone_layer(layer)
        x = clone(x)
        pairs.append((layer, clone))
    functional = keras.Model(inputs, x, name=model.name)
    for layer, clone in pairs:
        if clone is not layer:
            clone.set_weights(layer.get_weights())
    return functional


def copy_model(model: keras.Model) -> keras.Model:
    """An independent functional copy of ``model`` (weights copied, nothing shared).

    Args:
        model: the model to copy; left untouched.

    Returns:
        The copy (``as_functional``).

    Raises:
        TrialFailed: ``model`` is a Sequential model that is not built.
    """
    return as_functional(model)


def rebuild(
    model: keras.Model,
    replace: Mapping[str, Sequence[keras.layers.Layer]] | None = None,
    weights: Mapping[str, Sequence[np.ndarray]] | None = None,
) -> keras.Model:
    """Clone ``model``, calling ``replace[name]`` (in order) wherever layer ``name`` was called.

    Args:
        model: the model to clone; left untouched. Layers not replaced get the original's weights.
        replace: layer name -> the new layers called in its place, in order.
        weights: every layer (new or replacing) whose name is in ``weights`` gets those weights;
            a replacement may keep the original layer's name, e.g. the same Conv2D with fewer
            filters. New layers without an entry keep their fresh initialization.

    Returns:
        The new functional model.

    Raises:
        ValueError: ``replace`` or ``weights`` names a layer that is not there.
        TrialFailed: the rewrite changed the model's input or output shapes or dtypes.
    """
    replace = dict(replace or {})
    weights = dict(weights or {})
    if isinstance(model, keras.Sequential):
        model = as_functional(model)
    originals = {layer.name: layer for layer in model.layers}
    unknown = sorted(set(replace) - set(originals))
    if unknown:
        raise ValueError(f"cannot replace unknown layer(s) {unknown} in {model.name!r}")

    def clone_function(layer: Any) -> Any:
        """What ``clone_model`` puts in place of ``layer`` (a layer or operation of ``model``).

        Returns:
            A fresh copy; a replaced layer itself (``call_function`` calls its replacements).
        """
        if isinstance(layer, keras.layers.Layer) and layer.name in replace:
            return layer  # never called: call_function routes to the replacements
        return _clone_layer(layer)

    new = keras.models.clone_model(
        model,
        input_tensors=_named_inputs(model),
        clone_function=clone_function,
        call_function=partial(_call_replacing, replace),
    )
    _set_weights(new, originals, replace, weights)
    check_signature(model, new)
    return new


def _call_replacing(
    replace: Mapping[str, Sequence[keras.layers.Layer]], layer: Any, *args: Any, **kwargs: Any
) -> Any:
    """Call ``layer``, or in its place its replacements one after another."""
    name = getattr(layer, "name", None)  # an operation need not have one
    sequence = replace.get(name) if name is not None else None
    if sequence is None:
        return layer(*args, **kwargs)
    out = sequence[0](*args, **kwargs)
    for new in sequence[1:]:
        out = new(out)
    return out


def _named_inputs(model: keras.Model) -> Any:
    """New Input tensors named after the original InputLayers.

    Without explicit input tensors clone_model names the new Input after the
    KerasTensor ("keras_tensor_12"), not after the original InputLayer.
    """
    return keras.tree.map_structure(
        lambda t: keras.Input(
            batch_shape=t.shape, dtype=t.dtype, name=t._keras_history.operation.name
        ),
        model.input,  # same nesting (single tensor, list or dict) as clone_model requires
    )


def _set_weights(
    new: keras.Model,
    originals: dict[str, keras.layers.Layer],
    replace: Mapping[str, Sequence[keras.layers.Layer]],
    weights: Mapping[str, Sequence[np.ndarray]],
) -> None:
    """Given weights where named, the original's on layers not replaced; others keep
    their fresh initialization."""
    missing = sorted(set(weights) - {layer.name for layer in new.layers})
    if missing:
        raise ValueError(f"weights given for layer(s) {missing} that the rebuilt model lacks")
    for layer in new.layers:
        if layer.name in weights:
            layer.set_weights([np.asarray(w) for w in weights[layer.name]])
        elif layer.name in originals and layer.name not in replace:
            source = originals[layer.name]
            if source is not layer:
                layer.set_weights(source.get_weights())


def _clone_layer(layer: Any) -> Any:
    if not isinstance(layer, keras.layers.Layer):
        return layer  # a stateless keras.ops operation (e.g. ``x + y`` on tensors)
    if isinstance(layer, keras.Model):
        return copy_model(layer)
    try:
        return fresh_layer(layer)
    except Exception:  # noqa: BLE001 - e.g. Lambda layers refuse unsafe deserialization
        if layer.weights:
            raise
        return layer  # weightless, so sharing it with the original is harmless


def clone_with_weights(model: keras.Model) -> keras.Model:
    """``clone_model`` (the same class, fresh layers) with the original's weights.

    Args:
        model: the model to copy; left untouched.

    Returns:
        The copy, sharing no layer or weight with ``model``.
    """
    clone = keras.models.clone_model(model, clone_function=fresh_layer)
    clone.set_weights(model.get_weights())
    return clone


def fresh_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A new unbuilt layer from ``layer``'s config: ``clone_model``'s own default, except
    for the user's SavedModel (``--model DIR``, one TFSMLayer), which from_config refuses
    in safe mode as an external file, though loading it again is what the user asked.

    Args:
        layer: the layer to copy; left untouched.

    Returns:
        The new layer, of the same class and config, without weights until it is called.
    """
    if isinstance(layer, keras.layers.TFSMLayer):
        return keras.layers.TFSMLayer(**layer.get_config())
    return layer.__class__.from_config(layer.get_config())


def _input_name(model: keras.Model) -> str:
    history = getattr(model.inputs[0], "_keras_history", None)
    return history.operation.name if history else "input"


def check_signature(original: keras.Model, rewritten: keras.Model) -> None:
    """Raise unless both models take and give tensors of the same shapes and dtypes.

    Args:
        original: the model before the rewrite.
        rewritten: the model after it.

    Raises:
        TrialFailed: the inputs or the outputs differ (the message shows both).
    """
    for kind in ("inputs", "outputs"):
        old = [(tuple(t.shape), t.dtype) for t in getattr(original, kind)]
        new = [(tuple(t.shape), t.dtype) for t in getattr(rewritten, kind)]
        if old != new:
            raise TrialFailed(f"rewrite changed the model's {kind}: {old} -> {new}")


def unique_name(taken: set[str], base: str) -> str:
    """``base`` or ``base_2``, ``base_3``... whichever is not in ``taken``; records the result.

    Args:
        taken: the names in use; the result is added to it.
        base: the name wanted.

    Returns:
        The first of those names that was free.
    """
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def plain_weights(layer: keras.layers.Layer) -> bool:
    """Only a kernel and maybe a bias: no LoRA factors or quantization scales to keep in step.

    Args:
        layer: a layer with a kernel (Dense, Conv).

    Returns:
        True when its weights are its kernel and, if it uses one, its bias.
    """
    return len(layer.weights) == 1 + int(bool(getattr(layer, "use_bias", False)))


def clone_with(layer: keras.layers.Layer, **changes: Any) -> keras.layers.Layer:
    """A new unbuilt layer with ``layer``'s config, updated by ``changes``.

    Args:
        layer: the layer to copy; left untouched.
        **changes: config key -> new value, e.g. ``filters=32``.

    Returns:
        The new layer (same name unless ``changes`` sets one), without weights until called.
    """
    return layer.__class__.from_config({**layer.get_config(), **changes})

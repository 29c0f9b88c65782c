"""Unstructured magnitude pruning of Conv/Dense kernels, on a polynomial schedule.

Follows tensorflow-model-optimization's ``prune_low_magnitude`` with
``PolynomialDecay(power=3)`` (Zhu & Gupta 2017, "To prune, or not to prune"),
rewritten for Keras 3 because TF-MOT rejects Keras 3 models: each layer's
smallest-magnitude weights are zeroed, the fraction rising fast at first and
slowly near the target so the network can adapt during fine-tuning.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import Applied, WeightsTechnique, layer_value, weighted_layers
from devicefit.spaces.params import Choice, FloatRange

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()

# Variables holding multiplicative weights; biases and normalization stay dense.
KERNEL_ATTRS = ("kernel", "depthwise_kernel", "pointwise_kernel")
PATTERNS = ("unstructured", "xnnpack_1x1")
XNNPACK_MIN_SPARSITY = 2 / 3


def polynomial_sparsity(
    step: int, end_step: int, target: float, initial: float = 0.0, power: int = 3
) -> float:
    """``s_t = s_f + (s_i - s_f) * (1 - t / T) ** power``, with ``t`` clamped to ``[0, T]``.

    Args:
        step: ``t``, the training step.
        end_step: ``T``, the step the target is reached at; 0 or less gives the target at once.
        target: ``s_f``, the final sparsity.
        initial: ``s_i``, the sparsity at step 0.
        power: the schedule's exponent.

    Returns:
        ``s_t``, the sparsity to prune to at ``step``.
    """
    if end_step <= 0:
        return target
    progress = min(max(step / end_step, 0.0), 1.0)
    return target + (initial - target) * (1.0 - progress) ** power


def magnitude_mask(values: np.ndarray, sparsity: float) -> np.ndarray:
    """A mask zeroing exactly ``round(sparsity * size)`` entries of smallest magnitude.

    Args:
        values: a kernel's weights.
        sparsity: the fraction to zero, in [0, 1].

    Returns:
        An array shaped and typed like ``values``: 0 where a weight is pruned, 1 elsewhere.
    """
    count = int(round(sparsity * values.size))
    mask = np.ones(values.shape, dtype=values.dtype)
    if count <= 0:
        return mask
    if count >= values.size:
        return np.zeros_like(mask)
    smallest = np.argpartition(np.abs(values).ravel(), count - 1)[:count]
    mask.reshape(-1)[smallest] = 0
    return mask


def prunable_kernels(model: keras.Model) -> list[tuple[str, Any]]:
    """``(label, variable)`` of every kernel in ``model``, nested models included.

    Args:
        model: the Keras model; read only.

    Returns:
        Each kernel variable once (``kernel``, ``depthwise_kernel``, ``pointwise_kernel``),
        labelled ``"<layer>.<attribute>"``, in layer order.
    """
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()
    for layer in _walk(model):
        for attr in KERNEL_ATTRS:
            variable = getattr(layer, attr, None)
            if isinstance(variable, keras.Variable) and id(variable) not in seen:
                seen.add(id(variable))
                found.append((f"{layer.name}.{attr}", variable))
    return found


def _walk(layer: Any) -> Iterator[Any]:
    for child in getattr(layer, "layers", []):
        yield child
        yield from _walk(child)


def apply_masks(kernels: list[tuple[str, Any]], sparsity: float | list[float]) -> list[np.ndarray]:
    """Zero each kernel's smallest weights in place (one sparsity for all, or one per
    kernel); returns the masks applied.

    Args:
        kernels: ``prunable_kernels``'s pairs; their variables change in place.
        sparsity: the fraction to zero in every kernel, or a list with one per kernel.

    Returns:
        One mask per kernel, 0 where a weight was zeroed (``magnitude_mask``).
    """
    levels = sparsity if isinstance(sparsity, list) else [sparsity] * len(kernels)
    masks = []
    for (_, variable), level in zip(kernels, levels, strict=True):
        values = np.asarray(variable.numpy())
        mask = magnitude_mask(values, level)
        variable.assign(values * mask)
        masks.append(mask)
    return masks


class PruningSchedule(keras.callbacks.Callback):
    """Recomputes masks every ``frequency`` steps and re-applies them after every batch.

    Re-applying after each batch keeps pruned weights at zero even though the
    optimizer (momentum) keeps pushing them, as TF-MOT's wrapper does.
    """

    def __init__(
        self, kernels: list[tuple[str, Any]], targets: list[float], end_step: int, frequency: int
    ):
        super().__init__()
        self.kernels = kernels
        self.targets = targets
        self.end_step = end_step
        self.frequency = max(1, frequency)
        self.step = 0
        self.sparsity = 0.0
        self._masks: list[Any] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.step += 1
        if self.step % self.frequency == 0 or self.step == self.end_step or not self._masks:
            levels = [polynomial_sparsity(self.step, self.end_step, t) for t in self.targets]
            self.sparsity = max(levels)
            masks = apply_masks(self.kernels, levels)
            self._masks = [keras.ops.convert_to_tensor(m) for m in masks]
            return
        for (_, variable), mask in zip(self.kernels, self._masks, strict=True):
            variable.assign(variable * mask)


class MagnitudePruning(WeightsTechnique):
    """Zero a fraction ``sparsity`` of every Conv/Dense kernel, smallest magnitudes first.

    The schedule reaches the target at ``end_fraction`` of the fine-tuning
    steps so the last steps train the surviving weights at the final masks;
    ``finalize`` applies the target masks, so with no fine-tuning this is
    one-shot pruning. Dense kernels only get faster on runtimes with sparse
    kernels (XNNPACK's sparse path, or smaller files after compression), so
    the measurement decides whether it pays. ``pattern`` ``xnnpack_1x1`` prunes
    only 1x1 convolutions, to at least 2/3, and has the converter store them as
    sparse tensors: the layout XNNPACK's sparse inference accepts.
    """

    name = "magnitude_pruning"
    recipe = {"sparsity": 0.5}  # the one-technique recipe's setting
    structural = False
    default_ranges = {"sparsity": FloatRange(0.0, 0.9), "pattern": Choice(PATTERNS)}
    layer_params = {"sparsity": FloatRange(0.0, 0.9)}
    end_fraction: ClassVar[float] = 0.75
    mask_updates: ClassVar[int] = 50  # mask recomputations over the schedule (TF-MOT: every 100)

    def identity_params(self) -> dict[str, Any]:
        return {"sparsity": 0.0, "pattern": "unstructured"}

    def strong_params(self) -> dict[str, Any]:
        return {"sparsity": 0.9, "pattern": "unstructured"}

    def wants_sparse_file(self, params: dict[str, Any]) -> bool:
        return _pattern(params) == "xnnpack_1x1"

    def _kernels(self, model: keras.Model, params: dict[str, Any]) -> tuple[list, list[float]]:
        """The kernels to prune and each one's target sparsity.

        ``xnnpack_1x1``: only 1x1 Conv2D kernels, at least 2/3 sparse: the only ones
        XNNPACK's sparse inference runs sparse (its SpMM kernels need that much).
        """
        kernels = prunable_kernels(model)
        targets = _targets(self.name, params, kernels)
        if _pattern(params) != "xnnpack_1x1":
            return kernels, targets
        chosen = [
            (pair, max(target, XNNPACK_MIN_SPARSITY) if target > 0 else 0.0)
            for pair, target in zip(kernels, targets, strict=True)
            if _is_pointwise(model, pair[0])
        ]
        return [pair for pair, _ in chosen], [target for _, target in chosen]

    def training_callbacks(
        self, model: keras.Model, params: dict[str, Any], total_steps: int
    ) -> list[keras.callbacks.Callback]:
        kernels, targets = self._kernels(model, params)
        if not any(targets) or total_steps <= 0:
            return []
        end_step = max(1, math.ceil(self.end_fraction * total_steps))
        frequency = max(1, end_step // self.mask_updates)
        return [PruningSchedule(kernels, targets, end_step, frequency)]

    def finalize(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        """Apply the target masks to ``model`` in place (it is the fine-tuned model)."""
        kernels, targets = self._kernels(model, params)
        if not any(targets):
            return Applied(model, ["sparsity 0: weights unchanged"])
        masks = apply_masks(kernels, targets)
        notes = [
            f"{label}: {1.0 - float(mask.mean()):.1%} zeros"
            for (label, _), mask in zip(kernels, masks, strict=True)
        ]
        return Applied(model, notes)

    def explain(self, model: keras.Model) -> dict[str, tuple[bool, str]]:
        return explain_kernels(model, lambda size: f"{size} kernel weights")


def explain_kernels(model: keras.Model, applies: Any) -> dict[str, tuple[bool, str]]:
    """Techniques that act on every kernel: layers with one apply (``applies(size)``
    says how), layers with only per-channel weights do not.

    Args:
        model: the model; read only.
        applies: given a layer's kernel size (weights), the text of what is done to it.

    Returns:
        Layer name -> (whether the technique applies, what it does or why not), for every
        weighted layer.
    """
    kernels = {label.split(".", 1)[0]: v for label, v in prunable_kernels(model)}
    return {
        layer.name: (True, applies(int(np.prod(kernels[layer.name].shape))))
        if layer.name in kernels
        else (False, "no kernel (only per-channel weights)")
        for layer in weighted_layers(model)
    }


def _pattern(params: dict[str, Any]) -> str:
    pattern = str(params.get("pattern", "unstructured"))
    if pattern not in PATTERNS:
        raise ValueError(f"magnitude_pruning.pattern must be one of {PATTERNS}, got {pattern!r}")
    return pattern


def _is_pointwise(model: keras.Model, label: str) -> bool:
    name, attr = label.split(".", 1)
    try:
        layer = model.get_layer(name)
    except ValueError:  # a nested model's layer
        return False
    return (
        type(layer) is keras.layers.Conv2D
        and tuple(layer.kernel_size) == (1, 1)
        and (attr == "kernel")
    )


def _targets(name: str, params: dict[str, Any], kernels: list[tuple[str, Any]]) -> list[float]:
    """The target sparsity of each kernel (labelled ``layer.attribute``)."""
    targets = []
    for label, _ in kernels:
        target = float(layer_value(params, label.split(".", 1)[0], "sparsity", 0.0))
        if not 0.0 <= target < 1.0:
            raise ValueError(f"{name}.sparsity must be in [0, 1), got {target} for {label}")
        targets.append(target)
    return targets

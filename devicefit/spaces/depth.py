"""Depth pruning: whole residual branches removed, the identity shortcut kept.

A residual block computes ``x + f(x)``; where the shortcut is ``x`` itself (same shape,
no projection), dropping ``f`` leaves a valid network one block shallower (Veit et al.,
2016: residual networks degrade gracefully when single blocks are removed). On small
inputs a block's time is mostly per-op overhead that channel pruning cannot remove (a
ResNet-20 int8 file at 32x32 kept 0.07 ms of its 0.11 ms with 70% of some channels cut),
so taking out whole blocks is the step that reaches far below it.

Only ``Add`` layers with two inputs where one input is an ancestor of the other and both
have the same shape are candidates: the ancestor is the shortcut. A projection shortcut
(a 1x1 convolution on ``x``) is not an ancestor of the branch, so downsampling blocks stay.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import PER_LAYER, Applied, GraphTechnique
from devicefit.spaces.graph import GraphView, graph_view
from devicefit.spaces.params import FloatRange
from devicefit.spaces.rebuild import as_functional, rebuild
from devicefit.tasks.named_inputs import NamedInputs, feed, first_rows

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()

PROBE_SAMPLES = 32  # inputs the branches are ranked on (training inputs, else a fixed draw)


def residual_adds(view: GraphView) -> dict[str, int]:
    """Removable residual ``Add`` layers -> which of their two inputs is the shortcut.

    Args:
        view: the functional model's graph (``graph_view``).

    Returns:
        Add name -> the index (0 or 1) of the input that is the shortcut, for every Add
        called once on two same-shaped inputs, one an ancestor of the other, neither a model
        input nor a layer with several outputs.
    """
    found = {}
    for name in view.order:
        layer = view.layers[name]
        producers = view.inputs.get(name, [])
        if type(layer) is not keras.layers.Add or len(producers) != 2 or view.calls[name] != 1:
            continue
        if any(p in view.multi_output or not view.inputs.get(p) for p in producers):
            continue  # a model input as the shortcut would leave nothing of the block
        shapes = [view.shapes[p][1] for p in producers]
        if shapes[0] != shapes[1]:
            continue
        for index in (0, 1):
            if _is_ancestor(view, producers[index], producers[1 - index]):
                found[name] = index
                break
    return found


def _is_ancestor(view: GraphView, ancestor: str, of: str) -> bool:
    seen, stack = set(), [of]
    while stack:
        name = stack.pop()
        if name == ancestor:
            return True
        if name not in seen:
            seen.add(name)
            stack.extend(view.all_inputs.get(name, ()))
    return False


class _Shortcut:
    """Stands in for the Add while the model is rebuilt: hands on the shortcut tensor only,
    so the branch feeding the other input is no longer reachable and drops out."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, inputs: list[Any], *args: Any, **kwargs: Any) -> Any:
        return inputs[self.index]


class DepthPruning(GraphTechnique):
    """Remove a share ``ratio`` of the removable residual branches, those adding the least
    to their shortcut on training inputs first. Per unit (a block, or an Add at per-layer
    granularity), ``ratio`` is the share of that unit's branch removed: rounded, 1 or 0.

    The Add's name survives as an Identity layer on the shortcut (the converter drops it),
    so per-layer settings and reports keep naming the block.
    """

    name = "depth_pruning"
    structural = True
    default_ranges = {"ratio": FloatRange(0.0, 1.0)}
    layer_params = {"ratio": FloatRange(0.0, 1.0)}

    def __init__(self) -> None:
        self._samples: np.ndarray | NamedInputs | None = None  # by input name for several

    def identity_params(self) -> dict[str, Any]:
        return {"ratio": 0.0}

    def strong_params(self) -> dict[str, Any]:
        return {"ratio": 1.0}

    def prepare(self, samples: np.ndarray) -> None:
        self._samples = first_rows(samples, PROBE_SAMPLES).astype(np.float32)

    def units(
        self, model: keras.Model, granularity: str, blocks: dict[str, list[str]]
    ) -> dict[str, list[str]]:
        """Per layer, each removable Add; per block, the block holding it."""
        if granularity == "global":
            return {}
        adds = residual_adds(graph_view(model))  # graph_view reads the model; no copy
        if granularity == "per-layer":
            return {name: [name] for name in adds}
        return {block: [n for n in layers if n in adds] for block, layers in blocks.items()
                if any(n in adds for n in layers)}  # fmt: skip

    def acts_on(self, model: keras.Model) -> bool:
        return bool(residual_adds(graph_view(model)))

    def explain(self, model: keras.Model) -> dict[str, tuple[bool, str]]:
        """The layers of every removable branch, and the Add that names it."""
        functional = as_functional(model)
        view = graph_view(functional)
        adds = residual_adds(view)
        kept = {layer.name for layer in self.rewrite(functional, self.strong_params()).model.layers}
        result = {}
        for layer in functional.layers:
            if not layer.weights:
                continue
            if layer.name in kept:
                result[layer.name] = (False, "not inside a branch with an identity shortcut")
            else:
                owner = next((a for a in adds if _is_ancestor(view, layer.name, a)), "?")
                result[layer.name] = (True, f"inside the residual branch added at {owner}")
        return result

    def rewrite(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        functional = as_functional(model)
        view = graph_view(functional)
        adds = residual_adds(view)
        ratio = float(params.get("ratio", 0.0))
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"{self.name}.ratio must be within [0, 1], got {ratio}")
        if not adds:
            return Applied(functional, ["no residual Add with an identity shortcut"])
        count = math.floor(ratio * len(adds) + 0.5)
        ranked = list(adds)  # the order matters only when some, not all, are removed
        if 0 < count < len(adds):
            ranked = self._least_important(functional, adds)
        chosen = set(ranked[:count])
        remove = {}
        for name in adds:  # a unit's own ratio, where the plan sets one, over the global one
            own = params.get(PER_LAYER, {}).get(name, {}).get("ratio")
            remove[name] = float(own) >= 0.5 if own is not None else name in chosen
        notes = [
            f"{name}: residual branch removed, shortcut kept" if gone else f"{name}: kept"
            for name, gone in remove.items()
        ]
        replace = {
            name: [_Shortcut(adds[name]), keras.layers.Identity(name=name)]
            for name, gone in remove.items()
            if gone
        }
        if not replace:
            return Applied(functional, notes)
        return Applied(rebuild(functional, replace), notes)

    def _least_important(self, model: keras.Model, adds: dict[str, int]) -> list[str]:
        """The Adds, the one whose branch output is smallest against its shortcut first."""
        samples = self._samples
        if samples is None:  # no training inputs given: a fixed draw of each input's shape
            rng = np.random.default_rng(0)
            draws = {
                t.name: rng.standard_normal((PROBE_SAMPLES, *t.shape[1:])).astype(np.float32)
                for t in model.inputs
            }
            samples = NamedInputs(draws) if len(draws) > 1 else next(iter(draws.values()))
        layers = {layer.name: layer for layer in model.layers}
        tensors = [layers[name].input for name in adds]  # each: [input 0, input 1]
        probe = keras.Model(model.inputs, [t for pair in tensors for t in pair])
        values = probe(feed(samples), training=False)
        share = {}
        for n, (name, index) in enumerate(adds.items()):
            shortcut, branch = values[2 * n + index], values[2 * n + 1 - index]
            norm = float(np.linalg.norm(np.asarray(shortcut))) or 1.0
            share[name] = float(np.linalg.norm(np.asarray(branch))) / norm
        return sorted(adds, key=lambda name: share[name])

"""The Technique plugin point, and the Plan a trial carries from the sampler to the pipeline."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from devicefit.spaces.params import ParamSpec

if TYPE_CHECKING:
    import keras
    import numpy as np
    import optuna

Stage = Literal["graph", "weights", "convert"]
STAGE_ORDER: dict[str, int] = {"graph": 0, "weights": 1, "convert": 2}
GRANULARITIES = ("global", "per-block", "per-layer")
PER_LAYER = "per_layer"  # params key: {layer name: {param: value}} overriding the global values


def layer_value(params: dict[str, Any], layer: str, key: str, default: Any = None) -> Any:
    """``key`` for ``layer``: its per-layer value if the plan has one, else the global one."""
    return params.get(PER_LAYER, {}).get(layer, {}).get(key, params.get(key, default))


@dataclass(frozen=True)
class Step:
    technique: str
    params: dict[str, Any]

    def short(self) -> str:
        parts = [f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()) if k != PER_LAYER]
        parts += _per_layer_summary(self.params.get(PER_LAYER, {}))
        inner = ",".join(parts)
        return f"{self.technique}({inner})" if inner else self.technique


def _per_layer_summary(per_layer: dict[str, dict[str, Any]]) -> list[str]:
    """``ratio=0.1..0.6@12`` for numbers, ``precision=a8w8:3|float:2`` for choices."""
    values: dict[str, list[Any]] = {}
    for settings in per_layer.values():
        for key, value in settings.items():
            values.setdefault(key, []).append(value)
    out = []
    for key, seen in sorted(values.items()):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
            out.append(f"{key}={_fmt(min(seen))}..{_fmt(max(seen))}@{len(seen)}")
        else:
            counts = {str(v): seen.count(v) for v in dict.fromkeys(seen)}
            out.append(f"{key}=" + "|".join(f"{v}:{n}" for v, n in counts.items()))
    return out


@dataclass(frozen=True)
class Plan:
    """An ordered list of technique steps plus fine-tuning; JSON-serializable and hashable."""

    steps: tuple[Step, ...]
    finetune_epochs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [{"technique": s.technique, "params": s.params} for s in self.steps],
            "finetune_epochs": self.finetune_epochs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        steps = tuple(Step(s["technique"], dict(s["params"])) for s in data["steps"])
        return cls(steps, int(data.get("finetune_epochs", 0)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def step(self, technique: str) -> Step | None:
        return next((s for s in self.steps if s.technique == technique), None)

    def short(self) -> str:
        parts = [s.short() for s in self.steps]
        if self.finetune_epochs:
            parts.append(f"ft{self.finetune_epochs}")
        return " + ".join(parts)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@dataclass
class Applied:
    """A rewritten model and, per layer, what the technique did or why it left the layer alone."""

    model: keras.Model
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConvertContext:
    """What conversion needs besides the model: the shipped input shape and calibration data."""

    input_shape: tuple[int, ...]  # with batch 1, e.g. (1, 32, 32, 1)
    calibration: np.ndarray  # training inputs, float32, for full-integer calibration
    sparse: bool = False  # store sparse weights sparse (the converter's sparsity encoding)
    # The model's dense float32 file when the caller made it already: per-layer precisions
    # start from it instead of converting again (the sensitivity profile quantizes one unit
    # of the same untouched model per point; converting was 1.2 of each 1.4 s on digits).
    float_file: bytes | None = None


class Technique(ABC):
    """One compression technique and its slice of the search space.

    Contract (checked for every registered technique on every model of the zoo by
    tests/spaces/test_technique_conformance.py):
    - ``stage`` decides when it acts: ``graph`` rewrites the Keras model before
      fine-tuning, ``weights`` acts during fine-tuning (callbacks) and after it
      (``finalize``), ``convert`` turns the model into TFLite bytes.
    - The model's input and output signature never change.
    - At ``identity_params()`` the result is numerically the original model.
    - A setting it cannot honour on some layer is skipped for that layer and
      recorded in ``Applied.notes``; it never produces an invalid model.
    - ``sample`` draws the parameters from an Optuna trial, naming each
      parameter ``"<technique>.<param>"``, within ``ranges`` (the defaults
      merged with the study file's overrides).

    A new technique is one module plus its line in ``devicefit.spaces.TECHNIQUES``; e.g. a
    graph technique that drops every Dropout layer (it changes nothing at inference, so
    it is only an example)::

        class DropDropout(Technique):
            name = "drop_dropout"
            stage = "graph"
            default_ranges = {"on": Choice((False, True))}

            def identity_params(self) -> dict[str, Any]:
                return {"on": False}

            def strong_params(self) -> dict[str, Any]:
                return {"on": True}

            def rewrite(self, model: keras.Model, params: dict[str, Any]) -> Applied:
                drops = [x.name for x in model.layers if isinstance(x, keras.layers.Dropout)]
                if not params["on"] or not drops:
                    return Applied(copy_model(model), ["no Dropout" if params["on"] else "off"])
                # spaces/rebuild.py: each named layer is called as its replacements
                kept = rebuild(model, replace={name: [keras.layers.Identity()] for name in drops})
                return Applied(kept, [f"{name}: removed" for name in drops])
    """

    name: ClassVar[str]
    stage: ClassVar[Stage]
    structural: ClassVar[bool] = False  # whether it changes the computation (and so MACs)
    # A weights technique whose final state is in place before the first training step
    # (clustering), so a copy with it applied at once (``finalize``) is what fine-tuning
    # starts from; False for one that ramps up during training (gradual magnitude pruning).
    applied_before_training: ClassVar[bool] = False
    default_ranges: ClassVar[dict[str, ParamSpec]] = {}
    # Parameters that per-block and per-layer granularity draw once per unit (block,
    # layer or channel group); ``global_only`` ones are dropped at those granularities
    # because the per-unit ones replace them (quantization's mode by per-layer precision).
    layer_params: ClassVar[dict[str, ParamSpec]] = {}
    global_only: ClassVar[tuple[str, ...]] = ()

    def sample(self, trial: optuna.trial.BaseTrial, ranges: dict[str, ParamSpec]) -> dict[str, Any]:
        """Draw the technique's parameters from ``trial``.

        Args:
            trial: the Optuna trial (or a FixedTrial replaying fixed parameters).
            ranges: parameter -> its range, the defaults with the study's overrides.

        Returns:
            Parameter -> value; each drawn as ``"<technique>.<param>"``.
        """
        return {key: spec.suggest(trial, f"{self.name}.{key}") for key, spec in ranges.items()}

    @abstractmethod
    def identity_params(self) -> dict[str, Any]:
        """Parameters at which the technique changes nothing.

        Returns:
            Parameter -> value, one per key of ``default_ranges``, inside them.
        """

    @abstractmethod
    def strong_params(self) -> dict[str, Any]:
        """A strong but valid setting, used by the conformance tests.

        Returns:
            Parameter -> value, one per key of ``default_ranges``, inside them.
        """

    def prepare(self, samples: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Called before ``rewrite`` with training inputs, for techniques that rank
        weights by the activations they produce. Never the test split."""

    def acts_on(self, model: keras.Model) -> bool:
        """Whether the technique can change anything in ``model``: a study searching every
        technique leaves out one that cannot (its on/off switch would only cost trials)."""
        return True

    def rewrite(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        """graph stage: return a new model; the original is left untouched."""
        raise NotImplementedError(f"{self.name} is not a graph technique")

    def training_callbacks(
        self, model: keras.Model, params: dict[str, Any], total_steps: int
    ) -> list[keras.callbacks.Callback]:
        """weights stage: callbacks that act on ``model`` while it is fine-tuned."""
        return []

    def finalize(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        """weights stage: make the technique's effect final (e.g. apply the last masks)."""
        return Applied(model)

    def convert(self, model: keras.Model, params: dict[str, Any], ctx: ConvertContext) -> bytes:
        """convert stage: the TFLite flatbuffer that would ship."""
        raise NotImplementedError(f"{self.name} is not a convert technique")

    def wants_sparse_file(self, params: dict[str, Any]) -> bool:
        """weights stage: whether the file must encode sparse weights as sparse tensors."""
        return False

    def explain(self, model: keras.Model) -> dict[str, tuple[bool, str]]:
        """Per weighted layer: whether the technique can act on it, and what it would do
        there or why it cannot (``devicefit inspect`` prints this).

        The default, for graph techniques, rewrites at the strong setting: a layer
        applies when the rewrite changed it, and the rewrite's note says how or why not.
        """
        applied = self.rewrite(model, self.strong_params())
        said = dict(n.split(": ", 1) for n in applied.notes if ": " in n)
        after = {layer.name: layer for layer in applied.model.layers}
        result = {}
        for layer in weighted_layers(model):
            new = after.get(layer.name)
            changed = new is None or [tuple(w.shape) for w in new.weights] != [
                tuple(w.shape) for w in layer.weights
            ]
            default = "changed" if changed else "left as it is"
            result[layer.name] = (changed, said.get(layer.name, default))
        return result

    def units(
        self, model: keras.Model, granularity: str, blocks: dict[str, list[str]]
    ) -> dict[str, list[str]]:
        """What per-unit parameters are drawn for: unit name -> the layers it sets.

        ``per-layer``: every layer the technique can act on; ``per-block``: the
        ``blocks`` holding such layers; ``global``: none.
        """
        if granularity == "global" or not self.layer_params:
            return {}
        applicable = [name for name, (ok, _) in self.explain(model).items() if ok]
        if granularity == "per-layer":
            return {name: [name] for name in applicable}
        units = {}
        for block, layers in blocks.items():
            inside = [name for name in layers if name in applicable]
            if inside:
                units[block] = inside
        return units


def weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's own layers that hold weights, in order (nested models as one layer)."""
    return [layer for layer in model.layers if layer.weights]

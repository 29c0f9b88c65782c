"""The Technique plugin point, and the Plan a trial carries from the sampler to the pipeline."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from devicefit.spaces.params import Choice, ParamSpec

if TYPE_CHECKING:
    import keras
    import numpy as np
    import optuna

Stage = Literal["graph", "weights", "convert"]
STAGE_ORDER: dict[str, int] = {"graph": 0, "weights": 1, "convert": 2}
GRANULARITIES = ("global", "per-block", "per-layer")
PER_LAYER = "per_layer"  # params key: {layer name: {param: value}} overriding the global values


def layer_value(params: dict[str, Any], layer: str, key: str, default: Any = None) -> Any:
    """``key`` for ``layer``: its per-layer value if the plan has one, else the global one.

    Args:
        params: a step's parameters, per-layer overrides under ``PER_LAYER``.
        layer: the layer's name.
        key: the parameter's name, e.g. "ratio".
        default: the value when neither the layer nor the step sets ``key``.

    Returns:
        The layer's own value, else ``params[key]``, else ``default``.
    """
    return params.get(PER_LAYER, {}).get(layer, {}).get(key, params.get(key, default))


@dataclass(frozen=True)
class Step:
    technique: str
    params: dict[str, Any]

    def short(self) -> str:
        """The step as compact text for logs and reports, e.g. ``lowrank(rank_ratio=0.5)``.

        Returns:
            ``technique(key=value,...)``: the global parameters sorted by name (floats to 3
            significant digits), then the per-layer ones summarised, ``ratio=0.1..0.6@12`` for
            numbers (range and count), ``precision=a8w8:3|float:2`` for choices; the bare name
            when the step has no parameters.
        """
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
        """The plan as JSON-ready data, as ``from_dict`` reads it back.

        Returns:
            ``{"steps": [{"technique": name, "params": {...}}, ...], "finetune_epochs": n}``.
        """
        return {
            "steps": [{"technique": s.technique, "params": s.params} for s in self.steps],
            "finetune_epochs": self.finetune_epochs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The plan ``to_dict`` wrote.

        Args:
            data: ``to_dict``'s data (e.g. read back from JSON); a missing ``finetune_epochs`` is 0.

        Returns:
            The plan, each step's params copied.
        """
        steps = tuple(Step(s["technique"], dict(s["params"])) for s in data["steps"])
        return cls(steps, int(data.get("finetune_epochs", 0)))

    def to_json(self) -> str:
        """The plan as JSON with sorted keys, so equal plans give equal text.

        Returns:
            The JSON text of ``to_dict()``.
        """
        return json.dumps(self.to_dict(), sort_keys=True)

    def step(self, technique: str) -> Step | None:
        """The plan's step of one technique.

        Args:
            technique: a technique's name.

        Returns:
            That step, or None when the plan does not use the technique.
        """
        return next((s for s in self.steps if s.technique == technique), None)

    def short(self) -> str:
        """The plan as one line of compact text, for logs and reports.

        Returns:
            Each step's ``Step.short`` joined by " + ", then ``ft<epochs>`` when it fine-tunes,
            e.g. ``channel_pruning(importance=l1,ratio=0.3) + quantization(mode=int8) + ft2``.
        """
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

    A technique subclasses one of the three stage classes below, which decide when the
    pipeline calls it and which methods it must implement:

    - ``GraphTechnique`` rewrites the Keras model before fine-tuning (``rewrite``);
    - ``WeightsTechnique`` acts during fine-tuning (``training_callbacks``) and after it
      (``finalize``);
    - ``ConvertTechnique`` turns the model into the TFLite bytes that ship (``convert``).

    Contract (checked for every registered technique on every model of the zoo by
    tests/spaces/test_technique_conformance.py):
    - The model's input and output signature never change.
    - At ``identity_params()`` the result is numerically the original model.
    - A setting it cannot honour on some layer is skipped for that layer and
      recorded in ``Applied.notes``; it never produces an invalid model.
    - ``sample`` draws the parameters from an Optuna trial, naming each
      parameter ``"<technique>.<param>"``, within ``ranges`` (the defaults
      merged with the study file's overrides).
    - ``recipe``, when set, is a moderate setting inside ``default_ranges``: every study
      starts with the technique alone at it (the one-technique recipe an engineer would
      try first).

    A new technique is one module plus its line in ``devicefit.spaces.TECHNIQUES`` (or a
    ``register_technique`` call); e.g. a graph technique that drops every Dropout layer
    (it changes nothing at inference, so it is only an example)::

        class DropDropout(GraphTechnique):
            name = "drop_dropout"
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

    tests/spaces/test_a_new_technique.py adds a weights technique this way and runs it
    through the conformance suite and a search.
    """

    name: ClassVar[str]
    stage: ClassVar[Stage]  # set by the stage class: the order a plan applies techniques in
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
    # The one-technique recipe's setting (a value per parameter it fixes; the others are
    # drawn); empty: no recipe of this technique alone.
    recipe: ClassVar[dict[str, Any]] = {}

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

    @abstractmethod
    def explain(self, model: keras.Model) -> dict[str, tuple[bool, str]]:
        """What the technique would do to each weighted layer (``devicefit inspect``).

        Args:
            model: the model to compress; left untouched.

        Returns:
            Layer name -> (whether the technique can act on it, what it would do there
            or why it cannot).
        """

    def layer_identity_params(self) -> dict[str, Any]:
        """Per-unit parameters at which the technique changes nothing (a unit's own
        setting for the model as it is).

        Returns:
            Parameter of ``layer_params`` -> value; by default the ``identity_params``
            values of those parameters.
        """
        identity = self.identity_params()
        return {key: identity[key] for key in self.layer_params if key in identity}

    def prepare(self, samples: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Called before ``rewrite`` with training inputs, for techniques that rank
        weights by the activations they produce. Never the test split.

        Args:
            samples: training inputs, float32.
        """

    def acts_on(self, model: keras.Model) -> bool:
        """Whether the technique can change anything in ``model``: a study searching every
        technique leaves out one that cannot (its on/off switch would only cost trials).

        Args:
            model: the model to compress.

        Returns:
            True unless the technique knows it has nothing to act on.
        """
        return True

    def units(
        self, model: keras.Model, granularity: str, blocks: dict[str, list[str]]
    ) -> dict[str, list[str]]:
        """What per-unit parameters are drawn for: unit name -> the layers it sets.

        ``per-layer``: every layer the technique can act on; ``per-block``: the
        ``blocks`` holding such layers; ``global``: none.

        Args:
            model: the model to compress.
            granularity: ``global``, ``per-block`` or ``per-layer``.
            blocks: block name -> its layers (spaces/blocks.py).

        Returns:
            Unit name -> the layers its parameters set; empty when searched globally.
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


class GraphTechnique(Technique):
    """A technique that rewrites the Keras model before fine-tuning (pruning channels,
    factorizing, shrinking kernels)."""

    stage: ClassVar[Stage] = "graph"

    @abstractmethod
    def rewrite(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        """The model with the technique applied.

        Args:
            model: the model to rewrite; left untouched.
            params: the technique's parameters (``sample``'s, or fixed ones).

        Returns:
            A new model and, per layer, what was done or why not.
        """

    def explain(self, model: keras.Model) -> dict[str, tuple[bool, str]]:
        """What a rewrite at the strong setting does to each weighted layer: a layer
        applies when the rewrite changed it, and the rewrite's note says how or why not.

        Args:
            model: the model to compress; left untouched.

        Returns:
            Layer name -> (whether the technique can act on it, what it does there).
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


class WeightsTechnique(Technique):
    """A technique that changes weight values, not the graph: during fine-tuning (its
    callbacks) and after it (``finalize``), e.g. magnitude pruning and clustering."""

    stage: ClassVar[Stage] = "weights"

    @abstractmethod
    def training_callbacks(
        self, model: keras.Model, params: dict[str, Any], total_steps: int
    ) -> list[keras.callbacks.Callback]:
        """Callbacks that act on ``model`` while it is fine-tuned.

        Args:
            model: the model being fine-tuned; the callbacks change it in place.
            params: the technique's parameters.
            total_steps: training steps the fine-tuning will take (0: no training).

        Returns:
            The Keras callbacks; empty for a technique that acts only in ``finalize``.
        """

    @abstractmethod
    def finalize(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        """Make the technique's effect final (e.g. apply the last masks).

        Args:
            model: the fine-tuned model (or the rewritten one, without fine-tuning); may be
                changed in place.
            params: the technique's parameters.

        Returns:
            The model to convert, and per layer what was done or why not.
        """

    def wants_sparse_file(self, params: dict[str, Any]) -> bool:
        """Whether the file must encode sparse weights as sparse tensors.

        Args:
            params: the technique's parameters.

        Returns:
            False unless the technique leaves enough zeros for a sparse file to pay.
        """
        return False


class ConvertTechnique(Technique):
    """The technique that writes the shipped TFLite file (quantization). A plan has at
    most one; one without any is converted by the registry's default converter at its
    identity setting (a float32 file)."""

    stage: ClassVar[Stage] = "convert"

    @abstractmethod
    def convert(self, model: keras.Model, params: dict[str, Any], ctx: ConvertContext) -> bytes:
        """The TFLite flatbuffer that would ship.

        Args:
            model: the final Keras model; left untouched.
            params: the technique's parameters.
            ctx: the input shape, calibration inputs and whether to write sparse weights.

        Returns:
            The file's bytes.

        Raises:
            ValueError: ``params`` names a setting the technique does not know.
        """

    def identity_ranges(self) -> dict[str, ParamSpec]:
        """Its ranges narrowed to the identity setting: what a study that does not search
        the converter draws (the model's own file).

        Returns:
            Parameter -> a range holding only its identity value.
        """
        identity = self.identity_params()
        return {
            key: spec.override(
                [identity[key]] if isinstance(spec, Choice) else [identity[key]] * 2,
                f"ranges.{self.name}.{key}",
            )
            for key, spec in self.default_ranges.items()
        }


# What a technique subclasses: the pipeline calls each by its stage class.
STAGE_CLASSES = (GraphTechnique, WeightsTechnique, ConvertTechnique)


def weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's own layers that hold weights, in order (nested models as one layer).

    Args:
        model: a Keras model; read only.

    Returns:
        Its top-level layers with at least one weight, in ``model.layers`` order.
    """
    return [layer for layer in model.layers if layer.weights]

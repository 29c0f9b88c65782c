"""SearchSpace: which techniques a study searches and within which ranges; samples Plans."""

from __future__ import annotations

from typing import Any, cast

import optuna

from devicefit.errors import UsageError
from devicefit.spaces.base import (
    PER_LAYER,
    STAGE_ORDER,
    ConvertTechnique,
    Plan,
    Step,
    Technique,
    layer_value,
)
from devicefit.spaces.params import Choice, IntRange, ParamSpec, apply_overrides

FINETUNE = "finetune"
DEFAULT_EPOCHS = IntRange(0, 3)


def recipe_settings(techniques: list[Technique] | None = None) -> dict[str, dict[str, Any]]:
    """The moderate settings of the one-technique recipes every study starts with: each
    technique's ``recipe``; techniques with none are left out.

    Args:
        techniques: whose recipes (default: every registered technique).

    Returns:
        Technique name -> a copy of its ``recipe`` (parameter -> value).
    """
    if techniques is None:
        from devicefit.spaces import all_techniques

        techniques = all_techniques()
    return {t.name: dict(t.recipe) for t in techniques if t.recipe}


def __getattr__(name: str) -> Any:
    # RECIPE_SETTINGS was a table here; the techniques declare their recipes now.
    if name == "RECIPE_SETTINGS":
        return recipe_settings()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SearchSpace:
    """Every trial draws an on/off switch per technique, then that technique's parameters.

    A convert technique is always part of the plan (it decides how the file is written):
    the registry's default one at its identity setting when the study searches none.
    Fine-tuning epochs are drawn only when some technique changed the model.
    """

    def __init__(
        self,
        techniques: list[Technique],
        overrides: dict[str, dict[str, Any]] | None = None,
        granularity: dict[str, str] | None = None,
        units: dict[str, dict[str, list[str]]] | None = None,
    ) -> None:
        """``granularity``: technique -> global / per-block / per-layer (default global);
        ``units``: technique -> unit name -> layers, from :meth:`Technique.units` on the
        model (techniques with no units are sampled globally)."""
        overrides = dict(overrides or {})
        self.granularity = dict(granularity or {})
        self.units = {name: u for name, u in (units or {}).items() if u}
        self.epochs = _epochs(overrides.pop(FINETUNE, None))
        names = {t.name for t in techniques}
        stray = sorted(set(overrides) - names)
        if stray:
            raise UsageError(
                f"ranges: no enabled technique named {', '.join(stray)}; "
                f"enabled: {', '.join(sorted(names))}"
            )
        self.techniques = sorted(techniques, key=lambda t: STAGE_ORDER[t.stage])
        self.ranges: dict[str, dict[str, ParamSpec]] = {}
        self.layer_ranges: dict[str, dict[str, ParamSpec]] = {}
        for t in self.techniques:
            self.ranges[t.name], self.layer_ranges[t.name] = _ranges(t, overrides.get(t.name, {}))
        # The profiles' shaping (search/shaped_space.py): ranges ended for every trial, units
        # and techniques left out of the sampler's own.
        self.left_out: set[str] = set()
        self.left_out_units: dict[str, set[str]] = {}
        self.shaped_ranges: dict[str, dict[str, ParamSpec]] = {}
        self.unit_ranges: dict[str, dict[str, dict[str, ParamSpec]]] = {}
        if not any(isinstance(t, ConvertTechnique) for t in self.techniques):
            from devicefit.spaces import default_converter

            converter = default_converter()
            self.techniques.append(converter)
            self.ranges[converter.name] = converter.identity_ranges()

    def shape(self, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Leave out techniques and units, and end ranges, as the profiles decided
        (search/shaped_space.py's decisions as dicts).

        Args:
            decisions: each with "technique", "action" ("left out", "held" or an ending), "unit"
                (None: the technique itself or its global ranges) and, unless left out, "param",
                "end" (the value held, or the range's new end) and "bound" ("high" or "low").

        Returns:
            The decisions that changed the space (a range already ending there is not changed).
        """
        changed = []
        for d in decisions:
            tech, unit = d["technique"], d.get("unit")
            if tech not in self.ranges:
                continue
            if d["action"] == "left out":
                if unit is None:
                    self.left_out.add(tech)
                elif unit in self.units.get(tech, {}):
                    self.left_out_units.setdefault(tech, set()).add(unit)
                else:
                    continue
                changed.append(d)
                continue
            key = d["param"]
            if d["action"] == "held":
                if self._hold(tech, key, d["end"]):
                    changed.append(d)
                continue
            if unit is None and key in self.ranges[tech]:
                spec = self.ranges[tech][key]
                ended = self.shaped_ranges.setdefault(tech, {})
            elif unit in self.units.get(tech, {}) and key in self.layer_ranges[tech]:
                spec = self.layer_ranges[tech][key]
                ended = self.unit_ranges.setdefault(tech, {}).setdefault(unit, {})
            else:
                continue
            shorter = _ending(spec, d["end"], d["bound"])
            if shorter != spec:
                ended[key] = shorter
                changed.append(d)
        return changed

    def _hold(self, tech: str, key: str, value: Any) -> bool:
        """Hold the choice ``key`` of ``tech`` at ``value``; False when it is no choice of
        several that offers ``value`` (a study file that chose otherwise is obeyed)."""
        spec = self.shaped_ranges.get(tech, {}).get(key, self.ranges[tech].get(key))
        if not isinstance(spec, Choice) or len(spec.options) < 2 or value not in spec.options:
            return False
        self.shaped_ranges.setdefault(tech, {})[key] = Choice((value,))
        return True

    def sample(self, trial: optuna.trial.BaseTrial, leave_out: bool = True) -> Plan:
        """A plan drawn by the sampler, from ranges as the profiles ended them (every trial
        alike: one distribution per parameter).

        Args:
            trial: the Optuna trial, or a FixedTrial holding a plan's parameters.
            leave_out: ``leave_out=False`` keeps what the profiles left out (a recipe's fixed
                settings must not lose a unit).

        Returns:
            The switched-on techniques' steps in stage order, always with a convert step, and the
            fine-tuning epochs (0 when no technique but the converter changes the model).

        Raises:
            ValueError: a FixedTrial lacks a parameter the plan needs (``expressed`` relies on it).
        """
        steps: list[Step] = []
        for tech in self.techniques:
            if not isinstance(tech, ConvertTechnique):
                if leave_out and tech.name in self.left_out:
                    continue
                if not trial.suggest_categorical(f"{tech.name}.on", [False, True]):
                    continue
            steps.append(Step(tech.name, self._sample_technique(trial, tech, leave_out)))
        converters = {t.name for t in self.techniques if isinstance(t, ConvertTechnique)}
        changed = any(s.technique not in converters for s in steps)
        epochs = self.epochs.suggest(trial, f"{FINETUNE}.epochs") if changed else 0
        return Plan(tuple(steps), int(epochs))

    def expressed(self, plan: Plan) -> tuple[dict[str, Any], Plan] | None:
        """The trial parameters under which :meth:`sample` draws a plan doing what ``plan``
        does, and that plan (so the sampler learns from a plan made outside it).

        Args:
            plan: a plan made outside the sampler.

        Returns:
            (trial parameter -> value, the plan ``sample`` draws from them); None when the space
            cannot say it: a per-unit setting of a technique searched globally, a setting that
            differs within one of the space's units, epochs outside its range.
        """
        steps = {s.technique: s.params for s in plan.steps}
        params: dict[str, Any] = {}
        for tech in self.techniques:
            chosen = steps.get(tech.name)
            if not isinstance(tech, ConvertTechnique):
                params[f"{tech.name}.on"] = chosen is not None
            if chosen is None:
                continue
            units = self.units.get(tech.name) or {}
            if chosen.get(PER_LAYER) and not units:
                return None
            for key, value in chosen.items():
                if key != PER_LAYER and not (units and key in self.layer_ranges[tech.name]):
                    params[f"{tech.name}.{key}"] = value
            for unit, layers in units.items():
                for key in self.layer_ranges[tech.name]:
                    seen = {layer_value(chosen, layer, key) for layer in layers}
                    if len(seen) != 1:
                        return None
                    params[f"{tech.name}.{key}@{unit}"] = seen.pop()
        epochs = plan.finetune_epochs
        if epochs and not self.epochs.low <= epochs <= self.epochs.high:
            return None  # its epochs would be drawn afresh (the greedy's longer plans)
        params[f"{FINETUNE}.epochs"] = plan.finetune_epochs
        try:  # the round trip decides: a plan the space draws differently is not said
            again = self.sample(optuna.trial.FixedTrial(params), leave_out=False)
        except (ValueError, KeyError):
            return None
        return (params, again) if _same_effect(plan, again) else None

    def _sample_technique(
        self, trial: optuna.trial.BaseTrial, tech: Technique, leave_out: bool = False
    ) -> dict[str, Any]:
        units = self.units.get(tech.name)
        ranges = {**self.ranges[tech.name], **self.shaped_ranges.get(tech.name, {})}
        if not units:
            return tech.sample(trial, ranges)
        per_unit = self.layer_ranges[tech.name]
        shared = {
            key: spec
            for key, spec in ranges.items()
            if key not in per_unit and key not in tech.global_only
        }
        params = tech.sample(trial, shared)
        per_layer: dict[str, dict[str, Any]] = {}
        skipped = self.left_out_units.get(tech.name, set()) if leave_out else set()
        for unit, layers in units.items():
            if unit in skipped:  # left untouched: the identity, said explicitly
                identity = tech.identity_params()
                for layer in layers:
                    per_layer.setdefault(layer, {}).update(
                        {key: identity[key] for key in per_unit if key in identity}
                    )
                continue
            ended = self.unit_ranges.get(tech.name, {}).get(unit, {})
            for key, spec in per_unit.items():
                value = ended.get(key, spec).suggest(trial, f"{tech.name}.{key}@{unit}")
                for layer in layers:
                    per_layer.setdefault(layer, {})[key] = value
        params[PER_LAYER] = per_layer
        return params

    def recipe_params(
        self, setting: dict[str, dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Fixed parameters for one-technique recipes: each enabled technique alone at a
        moderate ``setting`` (default: each technique's own ``recipe``), fine-tuned,
        converted as float32.

        They are what an engineer would try first; enqueued after the baselines they
        give the sampler informed starting points and the report its reference recipes.
        Float32, because a quantization mode confounds the technique's own effect (on
        SRCNN, full-integer int8 is slower than float32 on XNNPACK).

        Args:
            setting: technique name -> parameter -> value; each value is clipped into its range.

        Returns:
            Per recipe ``{"technique": name, "params": trial parameter -> value}``: that technique
            on, the others off, the converter's float32 setting, 2 epochs (within the range).
        """
        epochs = min(max(2, self.epochs.low), self.epochs.high)
        switchable = [t for t in self.techniques if not isinstance(t, ConvertTechnique)]
        if setting is None:
            setting = recipe_settings(switchable)
        recipes = []
        for tech in switchable:
            if tech.name not in setting:
                continue
            params: dict[str, Any] = {f"{t.name}.on": t is tech for t in switchable}
            for key, value in setting[tech.name].items():
                spec = self.ranges[tech.name][key]
                low, high = getattr(spec, "low", value), getattr(spec, "high", value)
                params.update(self._named(tech, key, type(value)(min(max(value, low), high))))
            params.update(self._float_file())
            params[f"{FINETUNE}.epochs"] = epochs
            recipes.append({"technique": tech.name, "params": params})
        return recipes

    def combined_settings(self) -> dict[str, Any]:
        """What the trial combining the feasible recipes adds to their parameters: float32
        like the recipes, and the longest fine-tuning, since several techniques at once
        take the model furthest from the original.

        Returns:
            Trial parameter -> value: the converter's float32 setting and the most epochs.
        """
        return {**self._float_file(), f"{FINETUNE}.epochs": self.epochs.high}

    def _named(self, tech: Technique, key: str, value: Any) -> dict[str, Any]:
        """The trial parameter(s) that set ``key``: one per unit at finer granularity."""
        units = self.units.get(tech.name)
        if units and key in self.layer_ranges[tech.name]:
            return {f"{tech.name}.{key}@{unit}": value for unit in units}
        return {f"{tech.name}.{key}": value}

    def _float_file(self) -> dict[str, Any]:
        """Parameters that convert the model as it is (a float32 file): the converter's
        identity setting, every unit's where it is searched per unit (mixed precision)."""
        converter = next(t for t in self.techniques if isinstance(t, ConvertTechnique))
        if self.units.get(converter.name):
            params: dict[str, Any] = {}
            for key, value in converter.layer_identity_params().items():
                params.update(self._named(converter, key, value))
            return params
        return {f"{converter.name}.{k}": v for k, v in converter.identity_params().items()}

    def baseline_modes(self) -> list[str]:
        """The reference points every front gets: the original model as float32, float16, int8.

        Returns:
            Those quantization modes, for ``baseline_plan``.
        """
        return ["float32", "float16", "int8"]


def _epochs(override: Any) -> IntRange:
    """The fine-tuning epochs' range: the default, or the study file's ``finetune.epochs``."""
    if override is None:
        return DEFAULT_EPOCHS
    spec = apply_overrides({"epochs": DEFAULT_EPOCHS}, override, FINETUNE)
    epochs = cast(IntRange, spec["epochs"])  # IntRange.override keeps an IntRange
    if epochs.low < 0:
        raise UsageError(f"ranges.finetune.epochs: must be >= 0, got {epochs.low}")
    return epochs


def _ranges(
    tech: Technique, mine: dict[str, Any]
) -> tuple[dict[str, ParamSpec], dict[str, ParamSpec]]:
    """``tech``'s global and per-unit ranges with the study file's overrides ``mine``."""
    known = {**tech.default_ranges, **tech.layer_params}
    apply_overrides(known, mine, f"ranges.{tech.name}")  # names unknown keys
    where = f"ranges.{tech.name}"
    return (
        apply_overrides(
            tech.default_ranges, {k: v for k, v in mine.items() if k in tech.default_ranges}, where
        ),
        apply_overrides(
            tech.layer_params, {k: v for k, v in mine.items() if k in tech.layer_params}, where
        ),
    )


def baseline_plan(mode: str) -> Plan:
    """The original model, converted at ``mode``; built directly, not sampled, so the
    references exist even when the study file narrows the quantization choices.

    Args:
        mode: a quantization mode, e.g. "int8".

    Returns:
        A plan of one quantization step, without fine-tuning.
    """
    return Plan((Step("quantization", {"mode": mode}),), 0)


def _ending(spec: ParamSpec, end: Any, bound: str) -> ParamSpec:
    """``spec`` ending at ``end``: its high bound lowered to it (``bound`` "high") or its
    low bound raised to it ("low"), never past the other bound."""
    import dataclasses

    low, high = getattr(spec, "low", None), getattr(spec, "high", None)
    if low is None or high is None:
        return spec  # a choice: not shaped
    kind = type(low)
    if bound == "high":
        return dataclasses.replace(spec, high=kind(max(low, min(high, end))))
    return dataclasses.replace(spec, low=kind(min(high, max(low, end))))


def _same_effect(a: Plan, b: Plan) -> bool:
    """Whether two plans do the same: the same techniques, global settings and epochs,
    and every layer either one names set alike (an explicit identity equals none)."""
    if [s.technique for s in a.steps] != [s.technique for s in b.steps]:
        return False
    if a.finetune_epochs != b.finetune_epochs:
        return False
    for x, y in zip(a.steps, b.steps, strict=True):
        layers = {*x.params.get(PER_LAYER, {}), *y.params.get(PER_LAYER, {})}
        keys = {k for p in (x.params, y.params) for s in p.get(PER_LAYER, {}).values() for k in s}
        if any(
            layer_value(x.params, layer, key) != layer_value(y.params, layer, key)
            for layer in layers
            for key in keys
        ):
            return False
        shared = (set(x.params) | set(y.params)) - {PER_LAYER} - keys
        if any(x.params.get(k) != y.params.get(k) for k in shared):
            return False
    return True

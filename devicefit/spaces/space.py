"""SearchSpace: which techniques a study searches and within which ranges; samples Plans."""

from __future__ import annotations

from typing import Any

import optuna

from devicefit.errors import UsageError
from devicefit.spaces.base import PER_LAYER, STAGE_ORDER, Plan, Step, Technique
from devicefit.spaces.params import IntRange, ParamSpec, apply_overrides

FINETUNE = "finetune"
DEFAULT_EPOCHS = IntRange(0, 3)
# Moderate settings for the one-technique recipes every study starts with.
RECIPE_SETTINGS: dict[str, dict[str, Any]] = {
    "channel_pruning": {"ratio": 0.3, "importance": "activation"},
    "lowrank": {"rank_ratio": 0.5},
    "kernel_reduction": {"shrink": 1},
    "magnitude_pruning": {"sparsity": 0.5},
}


class SearchSpace:
    """Every trial draws an on/off switch per technique, then that technique's parameters.

    Quantization is always part of the plan (it decides how the file is written);
    fine-tuning epochs are drawn only when some technique changed the model.
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
        names = {t.name for t in techniques}
        self.epochs = DEFAULT_EPOCHS
        if FINETUNE in overrides:
            spec = apply_overrides({"epochs": DEFAULT_EPOCHS}, overrides.pop(FINETUNE), FINETUNE)
            self.epochs = spec["epochs"]  # type: ignore[assignment]
            if self.epochs.low < 0:
                raise UsageError(f"ranges.finetune.epochs: must be >= 0, got {self.epochs.low}")
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
            mine = overrides.get(t.name, {})
            known = {**t.default_ranges, **t.layer_params}
            apply_overrides(known, mine, f"ranges.{t.name}")  # names unknown keys
            self.ranges[t.name] = apply_overrides(
                t.default_ranges,
                {k: v for k, v in mine.items() if k in t.default_ranges},
                f"ranges.{t.name}",
            )
            self.layer_ranges[t.name] = apply_overrides(
                t.layer_params,
                {k: v for k, v in mine.items() if k in t.layer_params},
                f"ranges.{t.name}",
            )
        # The profiles' shaping (search/shaped_space.py), for the sampler's trials only.
        self.left_out: set[str] = set()
        self.left_out_units: dict[str, set[str]] = {}
        self.shaped_ranges: dict[str, dict[str, ParamSpec]] = {}
        self.unit_ranges: dict[str, dict[str, dict[str, ParamSpec]]] = {}
        if not any(t.stage == "convert" for t in self.techniques):
            from devicefit.spaces import get_technique

            quant = get_technique("quantization")
            self.techniques.append(quant)
            self.ranges[quant.name] = {
                "mode": quant.default_ranges["mode"].override(
                    ["float32"], "ranges.quantization.mode"
                )
            }

    def shape(self, decisions: list[dict[str, Any]]) -> None:
        """Leave out techniques and units, and end ranges, as the profiles decided
        (search/shaped_space.py's decisions as dicts); for trials sampled ``shaped``."""
        for d in decisions:
            tech, unit = d["technique"], d.get("unit")
            if tech not in self.ranges:
                continue
            if d["action"] == "left out":
                if unit is None:
                    self.left_out.add(tech)
                else:
                    self.left_out_units.setdefault(tech, set()).add(unit)
                continue
            key = d["param"]
            if unit is None and key in self.ranges[tech]:
                ended = _ending(self.ranges[tech][key], d["end"], d["bound"])
                self.shaped_ranges.setdefault(tech, {})[key] = ended
            elif unit is not None and key in self.layer_ranges[tech]:
                ended = _ending(self.layer_ranges[tech][key], d["end"], d["bound"])
                self.unit_ranges.setdefault(tech, {}).setdefault(unit, {})[key] = ended

    def sample(self, trial: optuna.Trial, shaped: bool = True) -> Plan:
        """A plan drawn by the sampler; ``shaped=False`` draws from the whole space (the
        recipes, whose settings are fixed, must not lose a unit the profiles left out)."""
        steps: list[Step] = []
        for tech in self.techniques:
            if tech.stage != "convert":
                if shaped and tech.name in self.left_out:
                    continue
                if not trial.suggest_categorical(f"{tech.name}.on", [False, True]):
                    continue
            steps.append(Step(tech.name, self._sample_technique(trial, tech, shaped)))
        changed = any(s.technique != "quantization" for s in steps)
        epochs = self.epochs.suggest(trial, f"{FINETUNE}.epochs") if changed else 0
        return Plan(tuple(steps), int(epochs))

    def _sample_technique(
        self, trial: optuna.Trial, tech: Technique, shaped: bool = False
    ) -> dict[str, Any]:
        units = self.units.get(tech.name)
        ranges = dict(self.ranges[tech.name])
        if shaped:
            ranges.update(self.shaped_ranges.get(tech.name, {}))
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
        skipped = self.left_out_units.get(tech.name, set()) if shaped else set()
        for unit, layers in units.items():
            if unit in skipped:  # left untouched: the identity, said explicitly
                identity = tech.identity_params()
                for layer in layers:
                    per_layer.setdefault(layer, {}).update(
                        {key: identity[key] for key in per_unit if key in identity}
                    )
                continue
            ended = self.unit_ranges.get(tech.name, {}).get(unit, {}) if shaped else {}
            for key, spec in per_unit.items():
                value = ended.get(key, spec).suggest(trial, f"{tech.name}.{key}@{unit}")
                for layer in layers:
                    per_layer.setdefault(layer, {})[key] = value
        params[PER_LAYER] = per_layer
        return params

    def recipe_params(self, setting: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Fixed parameters for one-technique recipes: each enabled technique alone at a
        moderate ``setting``, fine-tuned, converted as float32.

        They are what an engineer would try first; enqueued after the baselines they
        give the sampler informed starting points and the report its reference recipes.
        Float32, because a quantization mode confounds the technique's own effect (on
        SRCNN, full-integer int8 is slower than float32 on XNNPACK).
        """
        epochs = min(max(2, self.epochs.low), self.epochs.high)
        switchable = [t for t in self.techniques if t.stage != "convert"]
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
        take the model furthest from the original."""
        return {**self._float_file(), f"{FINETUNE}.epochs": self.epochs.high}

    def _named(self, tech: Technique, key: str, value: Any) -> dict[str, Any]:
        """The trial parameter(s) that set ``key``: one per unit at finer granularity."""
        units = self.units.get(tech.name)
        if units and key in self.layer_ranges[tech.name]:
            return {f"{tech.name}.{key}@{unit}": value for unit in units}
        return {f"{tech.name}.{key}": value}

    def _float_file(self) -> dict[str, Any]:
        """Parameters that convert at float32: the mode, or every layer's precision."""
        units = self.units.get("quantization")
        if units:
            return {f"quantization.precision@{unit}": "float" for unit in units}
        return {"quantization.mode": "float32"}

    def baseline_modes(self) -> list[str]:
        """The reference points every front gets: the original model as float32, float16, int8."""
        return ["float32", "float16", "int8"]


def baseline_plan(mode: str) -> Plan:
    """The original model, converted at ``mode``; built directly, not sampled, so the
    references exist even when the study file narrows the quantization choices."""
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

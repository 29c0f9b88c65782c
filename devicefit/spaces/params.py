"""Declarations of a technique's searchable parameters, overridable from the study file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from devicefit.errors import UsageError


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False

    def override(self, value: Any, where: str) -> FloatRange:
        low, high = _pair(value, where, (int, float))
        rng = FloatRange(float(low), float(high), self.log)
        rng.validate(where)
        return rng

    def validate(self, where: str) -> None:
        if not self.low <= self.high:
            raise UsageError(f"{where}: invalid range [{self.low}, {self.high}] (low > high)")

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> float:
        if self.low == self.high:
            return self.low
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int

    def override(self, value: Any, where: str) -> IntRange:
        low, high = _pair(value, where, (int,))
        rng = IntRange(int(low), int(high))
        rng.validate(where)
        return rng

    def validate(self, where: str) -> None:
        if not self.low <= self.high:
            raise UsageError(f"{where}: invalid range [{self.low}, {self.high}] (low > high)")

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> int:
        if self.low == self.high:
            return self.low
        return trial.suggest_int(name, self.low, self.high)


@dataclass(frozen=True)
class Choice:
    options: tuple[Any, ...]
    # Choices a study may ask for in its ranges but that are not searched by default:
    # adding one to the default would change the space of every study made before it,
    # which Optuna then refuses to resume.
    extra: tuple[Any, ...] = ()

    def override(self, value: Any, where: str) -> Choice:
        if not isinstance(value, list | tuple) or not value:
            raise UsageError(f"{where}: expected a non-empty list of choices, got {value!r}")
        allowed = (*self.options, *self.extra)
        unknown = [v for v in value if v not in allowed]
        if unknown:
            allowed_text = ", ".join(map(str, allowed))
            raise UsageError(f"{where}: unknown choice(s) {unknown}; allowed: {allowed_text}")
        return Choice(tuple(value), self.extra)

    def validate(self, where: str) -> None:
        if not self.options:
            raise UsageError(f"{where}: no choices")

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> Any:
        if len(self.options) == 1:
            return self.options[0]
        return trial.suggest_categorical(name, list(self.options))


ParamSpec = FloatRange | IntRange | Choice


def _pair(value: Any, where: str, types: tuple[type, ...]) -> tuple[Any, Any]:
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, types) and not isinstance(v, bool) for v in value)
    )
    if not ok:
        kind = "integers" if types == (int,) else "numbers"
        raise UsageError(f"{where}: expected [low, high] as two {kind}, got {value!r}")
    return value[0], value[1]


def apply_overrides(
    defaults: dict[str, ParamSpec], overrides: dict[str, Any], where: str
) -> dict[str, ParamSpec]:
    """Merge a study file's ranges into a technique's defaults, naming bad keys and values."""
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise UsageError(
            f"{where}: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(defaults))}"
        )
    merged = dict(defaults)
    for key, value in overrides.items():
        merged[key] = defaults[key].override(value, f"{where}.{key}")
    return merged

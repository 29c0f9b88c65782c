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
        """This range with the study file's bounds (``log`` kept).

        Args:
            value: the study file's ``[low, high]``, two numbers.
            where: the setting's place in the study file, for error messages.

        Returns:
            The new range.

        Raises:
            UsageError: ``value`` is not two numbers, or ``low > high``.
        """
        low, high = _pair(value, where, (int, float))
        rng = FloatRange(float(low), float(high), self.log)
        rng.validate(where)
        return rng

    def validate(self, where: str) -> None:
        """Check that the range is not empty.

        Args:
            where: the setting's place in the study file, for the error message.

        Raises:
            UsageError: ``low > high``.
        """
        if not self.low <= self.high:
            raise UsageError(f"{where}: invalid range [{self.low}, {self.high}] (low > high)")

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> float:
        """Draw a value within the range from ``trial``.

        Args:
            trial: the Optuna trial (or a FixedTrial replaying fixed parameters).
            name: the parameter's name in the trial, ``"<technique>.<param>"``.

        Returns:
            The value; ``low``, without asking the trial, when the range is one value.
        """
        if self.low == self.high:
            return self.low
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int

    def override(self, value: Any, where: str) -> IntRange:
        """This range with the study file's bounds.

        Args:
            value: the study file's ``[low, high]``, two integers.
            where: the setting's place in the study file, for error messages.

        Returns:
            The new range.

        Raises:
            UsageError: ``value`` is not two integers, or ``low > high``.
        """
        low, high = _pair(value, where, (int,))
        rng = IntRange(int(low), int(high))
        rng.validate(where)
        return rng

    def validate(self, where: str) -> None:
        """Check that the range is not empty.

        Args:
            where: the setting's place in the study file, for the error message.

        Raises:
            UsageError: ``low > high``.
        """
        if not self.low <= self.high:
            raise UsageError(f"{where}: invalid range [{self.low}, {self.high}] (low > high)")

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> int:
        """Draw a value within the range from ``trial``.

        Args:
            trial: the Optuna trial (or a FixedTrial replaying fixed parameters).
            name: the parameter's name in the trial, ``"<technique>.<param>"``.

        Returns:
            The value; ``low``, without asking the trial, when the range is one value.
        """
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
        """The choices narrowed to the study file's list (``extra`` choices allowed too).

        Args:
            value: the study file's list of choices.
            where: the setting's place in the study file, for error messages.

        Returns:
            A Choice offering exactly ``value``, in its order.

        Raises:
            UsageError: ``value`` is not a non-empty list, or names a choice that is neither an
                option nor an extra.
        """
        if not isinstance(value, list | tuple) or not value:
            raise UsageError(f"{where}: expected a non-empty list of choices, got {value!r}")
        allowed = (*self.options, *self.extra)
        unknown = [v for v in value if v not in allowed]
        if unknown:
            allowed_text = ", ".join(map(str, allowed))
            raise UsageError(f"{where}: unknown choice(s) {unknown}; allowed: {allowed_text}")
        return Choice(tuple(value), self.extra)

    def validate(self, where: str) -> None:
        """Check that there is something to choose.

        Args:
            where: the setting's place in the study file, for the error message.

        Raises:
            UsageError: there are no options.
        """
        if not self.options:
            raise UsageError(f"{where}: no choices")

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> Any:
        """Draw one of the options from ``trial``.

        Args:
            trial: the Optuna trial (or a FixedTrial replaying fixed parameters).
            name: the parameter's name in the trial, ``"<technique>.<param>"``.

        Returns:
            The option; the only one, without asking the trial, when there is one.
        """
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
    """Merge a study file's ranges into a technique's defaults, naming bad keys and values.

    Args:
        defaults: parameter -> its default range.
        overrides: parameter -> the study file's value for it.
        where: the table's place in the study file, e.g. "ranges.lowrank".

    Returns:
        A new dict: ``defaults`` with each overridden parameter's range replaced.

    Raises:
        UsageError: an unknown parameter, or a value its range refuses.
    """
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

"""A user's own metric: ``--metric path/to/file.py:function`` or ``--metric module:function``.

The function takes ``(y_true, y_pred)`` (arrays; y_pred is the model's output on the same
samples) and returns a number. Its attributes say how to read that number:
``higher_is_better`` (default True), ``unit`` (default "") and ``max_drop``, the default
metric budget in the metric's own unit (else the study's ``max_metric_drop`` must say).

Every problem is one line naming the file (or module) and the function: a file or
function that is missing or will not import, an attribute of the wrong type (a
UsageError, at load time), a call that raises or returns something that is not a finite
number (a MetricError, at call time: the CLI turns one on the original model into a
UsageError before the study starts; in a trial it fails only that trial).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from devicefit.errors import UsageError
from devicefit.evaluators.metrics import Metric
from devicefit.user_code import absolute_target, import_target, one_line, user_frame


class MetricError(RuntimeError):
    """The user's metric function raised, or returned something that is not a finite number.

    Its message is already the one line a user needs (the metric, what went wrong and
    where in their file), so it is shown and stored as it is."""


def is_custom_metric(name: str) -> bool:
    """Whether ``--metric`` names a function (``target:function``) rather than a built-in.

    Args:
        name: the ``--metric`` value.

    Returns:
        True for a user's function, False for a built-in metric's name.
    """
    return ":" in name


def absolute_metric_spec(name: str) -> str:
    """``name`` with a relative file made absolute, so a study resumed from another folder
    (or run by workers that start elsewhere) loads the same file; modules and built-ins as
    they are.

    Args:
        name: the ``--metric`` value.

    Returns:
        The spec to store with the study.
    """
    return absolute_target(name) if is_custom_metric(name) else name


def metric_for(name: str, kind: Literal["classification", "regression"]) -> Metric:
    """The built-in metric ``name``, or the user's function it names (of ``kind``).

    Args:
        name: a built-in metric's name, or ``file.py:function`` / ``module:function``.
        kind: for a user's function, how fine-tuning reads the labels; a built-in metric
            has its own.

    Returns:
        The metric.

    Raises:
        UsageError: no built-in metric has that name, or the user's function cannot be
            loaded (see :func:`load_custom_metric`).
    """
    from devicefit.evaluators.metrics import get_metric

    return load_custom_metric(name, kind) if is_custom_metric(name) else get_metric(name)


def load_custom_metric(name: str, kind: Literal["classification", "regression"]) -> Metric:
    """The metric ``name`` (``file.py:function`` or ``module:function``) as a Metric of
    ``kind`` (how fine-tuning reads the labels: class indices, or values to regress).

    Args:
        name: ``file.py:function`` or ``module:function``, as given to ``--metric``.
        kind: ``"classification"`` or ``"regression"``.

    Returns:
        The metric; calling it raises :class:`MetricError` when the function fails or
        gives no finite number.

    Raises:
        UsageError: ``name`` is malformed, the file or module does not import, it has no
            such function, or ``higher_is_better``, ``unit`` or ``max_drop`` is of the
            wrong type.
    """
    target, _, function_name = name.rpartition(":")
    where = f"--metric {name}"
    if not target or not function_name:
        raise UsageError(f"{where}: give FILE.py:FUNCTION or MODULE:FUNCTION")
    module = import_target(target, where, "devicefit_metric")
    function = getattr(module, function_name, None)
    if function is None:
        raise UsageError(f"{where}: {target} has no function {function_name!r}")
    if not callable(function):
        raise UsageError(f"{where}: {target}.{function_name} is not a function")
    higher = getattr(function, "higher_is_better", True)
    if not isinstance(higher, bool | np.bool_):
        raise UsageError(f"{where}: higher_is_better must be True or False, got {higher!r}")
    unit = getattr(function, "unit", "")
    if not isinstance(unit, str):
        raise UsageError(f"{where}: unit must be a string, got {unit!r}")
    max_drop = getattr(function, "max_drop", None)
    if max_drop is not None and not (_is_finite_number(max_drop) and max_drop >= 0):
        raise UsageError(f"{where}: max_drop must be a finite number >= 0, got {max_drop!r}")
    return Metric(
        function_name,
        bool(higher),
        kind,
        unit,
        None if max_drop is None else float(max_drop),
        _checked(function, name),
        source=name,
    )


def check_on_model(metric: Metric, y_true: np.ndarray, y_pred: Any) -> float:
    """The metric on the original model's outputs; a UsageError if it fails there, where
    every candidate would fail too.

    Args:
        metric: the task's metric.
        y_true: the validation labels.
        y_pred: the original model's outputs on the same samples.

    Returns:
        The metric's value for the original model.

    Raises:
        UsageError: the metric raised :class:`MetricError` (the study must not start).
    """
    try:
        return metric(y_true, y_pred)
    except MetricError as exc:
        raise UsageError(f"--metric: {exc} (on the original model's validation outputs)") from None


def _checked(function: Callable[..., Any], name: str) -> Callable[[Any, Any], float]:
    """``function`` whose failures and non-numbers are one MetricError line each."""

    def call(y_true: Any, y_pred: Any) -> float:
        """``function(y_true, y_pred)`` as a finite float.

        Args:
            y_true: the labels.
            y_pred: the model's outputs on the same samples.

        Returns:
            The user's number (a one-element array taken as its element).

        Raises:
            MetricError: the function raised, or returned no finite number.
        """
        try:
            value = function(y_true, y_pred)
        except Exception as exc:  # noqa: BLE001 - a user's metric can fail in any way
            raise MetricError(f"{name} raised {one_line(exc)}{user_frame(exc)}") from exc
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(())[()]
        if not _is_number(value):
            raise MetricError(
                f"{name} returned {_short_repr(value)} ({type(value).__name__}), not a number"
            )
        if not math.isfinite(float(value)):
            raise MetricError(f"{name} returned {float(value)}, not a finite number")
        return float(value)

    return call


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _is_finite_number(value: Any) -> bool:
    return _is_number(value) and math.isfinite(float(value))


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

"""What converting the whole untouched model costs, scored when a study starts.

A profile plan converts at the faster of the untouched model's float32 and int8 files
(search/greedy_plan.py). Speed alone is not enough to choose: post-training int8 is applied
after fine-tuning, so nothing wins its loss back, and on SRCNN it alone costs 0.57 dB
against a 0.3 dB budget — every int8 plan started over the budget and the climb never
escalated. So the int8 file is scored on the sensitivity profile's validation subset,
against the float32 file scored the same way, and stored in ``sensitivity.json`` as
``conversions``: {"int8": {"metric", "drop"}} (or {"error": why}).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

SCORED_MODES = ("int8",)  # the whole-file conversions a profile plan may choose besides float32


def conversion_drops(task: Any, modes: tuple[str, ...] = SCORED_MODES) -> dict[str, Any]:
    """Per mode, the file's metric and its drop against the float32 file (>0 is worse), on
    the profile's validation subset; a mode that fails to convert or run, with its error.

    Args:
        task: the loaded task: its model is converted, its metric scores the files.
        modes: the whole-file conversions scored besides float32.

    Returns:
        Mode -> {"metric", "drop"}, float32 itself included (drop 0.0); a mode that failed,
        {"error": the first line of why}.
    """
    from devicefit.evaluators.tflite_predict import predict
    from devicefit.search.sensitivity_request import profile_inputs
    from devicefit.spaces.base import ConvertContext
    from devicefit.spaces.quantization import Quantization

    x, y = profile_inputs(task)
    quantization = Quantization()  # by its modes: these profiles are of quantization
    context = ConvertContext(task.input_shape, task.calibration)

    def score(mode: str) -> float:
        """The task metric of the model converted at ``mode``, on the profile subset.

        Args:
            mode: the quantization mode to convert at.

        Returns:
            The metric, as the task's metric reads it.
        """
        tflite = quantization.convert(task.model, {"mode": mode}, context)
        return float(task.metric(y, predict(tflite, x)))

    reference = score("float32")
    drops: dict[str, Any] = {"float32": {"metric": reference, "drop": 0.0}}
    for mode in modes:
        try:
            value = score(mode)
        except Exception as exc:  # noqa: BLE001 - the converter's failures have no common type
            drops[mode] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            continue
        drops[mode] = {"metric": value, "drop": float(task.metric.drop(reference, value))}
    return drops


def add_conversion_drops(
    folder: Path, profile: dict[str, Any], task: Any, modes: tuple[str, ...], console: Any
) -> dict[str, Any]:
    """The drops of the ``modes`` among ``SCORED_MODES``, added to a finished profile once (a
    resumed study keeps them) and saved; the profile.

    Args:
        folder: the study folder; the profile is saved there as ``sensitivity.json``.
        profile: the sensitivity profile; ``conversions`` is added to it in place.
        task: the loaded task the files are converted from and scored on.
        modes: the whole-model conversions the study's space may choose.
        console: where one line per scored mode is printed.

    Returns:
        ``profile``, with ``conversions`` when it is complete and a mode was scored.
    """
    from devicefit.search import attrs
    from devicefit.search.artifacts import write_json_atomic

    scored = tuple(m for m in SCORED_MODES if m in modes)
    if "conversions" in profile or not profile.get("complete") or not scored:
        return profile
    profile["conversions"] = conversion_drops(task, scored)
    write_json_atomic(folder / attrs.SENSITIVITY_FILE, profile)
    for mode in scored:
        entry = profile["conversions"][mode]
        said = entry.get("error") or f"drop {entry['drop']:+.3f} against the float32 file"
        console.print(f"whole-model {mode} file on the profile subset: {said}", markup=False)
    return profile


def int8_drop(profile: dict[str, Any]) -> float | None:
    """The int8 file's drop in a profile; None when it was not scored (a study made before
    it, or one that may not convert to int8), infinite when it could not be (a file that
    cannot be scored is not a file to plan on).

    Args:
        profile: the sensitivity profile, as saved.

    Returns:
        The drop in metric units (>0 is worse), or None or infinity as above.
    """
    entry = (profile.get("conversions") or {}).get("int8")
    if entry is None:
        return None
    return float(entry["drop"]) if "drop" in entry else math.inf

"""Where the untouched model's time goes on each device, profiled when a study starts.

Before any worker runs (the host is quiet), the model's float32 and int8 files — converted
exactly as the baselines are — are measured on every device with a per-op profile, and the
time traced to layers, blocks and channel groups. Saved as ``device_profile.json`` in the
study folder; the report shows it as "Where the time goes".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devicefit.errors import DeviceUnavailable, TrialFailed
from devicefit.search import attrs
from devicefit.search.artifacts import write_json_atomic

PROFILED_MODES = ("float32", "int8")


def read_device_profiles(folder: Path) -> dict[str, Any] | None:
    """device -> {"float32": profile, "int8": profile}, a file the device could not profile
    being {"unavailable": why}; None when the study has none (made before profiles).

    Args:
        folder: the study folder.

    Returns:
        The saved profiles as above; None also when the file cannot be read or parsed.
    """
    try:
        data = json.loads((folder / attrs.DEVICE_PROFILE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_device_profiles(
    folder: Path, task: Any, devices: dict[str, Any], threads: int, console: Any
) -> dict[str, Any]:
    """Profile, save and summarise in one line per device. A file that does not convert or a
    device that cannot profile it is recorded with its reason under that file
    (``{"unavailable": why}``), and the study goes on.

    Args:
        folder: the study folder; the profiles are saved there.
        task: the loaded task whose untouched model is converted and profiled.
        devices: device name -> pool, profiled in turn.
        threads: the threads each profile runs on.
        console: where each device's line is printed.

    Returns:
        Device -> mode -> where the time goes, with ``median_ms``; or the reason above."""
    from devicefit.spaces.base import ConvertContext
    from devicefit.spaces.device_profile import device_profile
    from devicefit.spaces.quantization import Quantization

    quantization = Quantization()  # by its modes: these profiles are of quantization
    context = ConvertContext(task.input_shape, task.calibration)
    files: dict[str, bytes | str] = {}
    for mode in PROFILED_MODES:
        try:
            files[mode] = quantization.convert(task.model, {"mode": mode}, context)
        except Exception as exc:  # noqa: BLE001 - the converter's failures have no common type
            files[mode] = f"{mode} conversion failed: {exc}"
    profiles: dict[str, Any] = {}
    for name, device in devices.items():
        entry: dict[str, Any] = {}
        for mode, tflite in files.items():
            if isinstance(tflite, str):
                entry[mode] = {"unavailable": tflite}
                continue
            try:
                times, median = device_profile(
                    task.model, task.input_shape, device, threads, tflite
                )
            except (DeviceUnavailable, TrialFailed) as exc:
                entry[mode] = {"unavailable": str(exc)}
                continue
            except Exception as exc:  # noqa: BLE001 - a profile must never stop the study
                entry[mode] = {"unavailable": f"{type(exc).__name__}: {exc}".splitlines()[0]}
                continue
            entry[mode] = {**times.to_dict(), "median_ms": median}
        profiles[name] = entry
        console.print(_summary(name, entry), markup=False)
    write_json_atomic(folder / attrs.DEVICE_PROFILE_FILE, profiles)
    return profiles


def _summary(device: str, entry: dict[str, Any]) -> str:
    profile = entry.get("float32") or {}
    if "layers" not in profile:
        why = profile.get("unavailable", "no float32 file")
        return f"where the time goes on {device}: not profiled ({why})"
    layers = profile["layers"]
    total = sum(layers.values()) + sum((profile.get("unmapped") or {}).values()) or 1.0
    top = sorted(layers.items(), key=lambda kv: -kv[1])[:3]
    shares = ", ".join(f"{name} {ms / total:.0%}" for name, ms in top)
    return f"where the time goes on {device} (float32): {shares}; {attrs.DEVICE_PROFILE_FILE}"

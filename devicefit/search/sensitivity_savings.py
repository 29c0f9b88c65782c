"""The time each sensitivity setting saves: predicted from the device profile, and checked
against a measurement for a few of them.

A setting's prediction is the untouched model's measured time per layer (device_profile.json,
float32 file) times the share of the layer's MACs the setting removes (the point's
``macs_kept``): a pruned block's own convolutions and the layer after it that reads fewer
channels both count. Weight techniques save nothing on dense kernels (predicted 0); a
convert technique's saving depends on its kernels, not its MACs, and is not predicted.

The check: the graph-technique settings predicted to save the most (up to ``CHECKED``, one
technique after another), rebuilt, converted as the float32 baseline is, and measured in
paired rounds against the untouched file on the first profiled device, so a report can say
how far the predictions are to be trusted on this model and device.
"""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any

CHECKED = 3  # settings whose predicted saving is measured
ROUNDS = 10  # paired rounds of the untouched and the changed file, per checked setting


def predicted_saved_ms(kept: dict[str, float], layer_ms: dict[str, float]) -> float:
    """Time saved when each layer in ``kept`` keeps that share of its MACs (a layer that
    grew counts as time added).

    Args:
        kept: layer name -> the share of its MACs kept.
        layer_ms: the untouched file's time per layer (a layer not in it: 0).

    Returns:
        The predicted saving in ms (negative for time added).
    """
    return sum(layer_ms.get(name, 0.0) * (1.0 - share) for name, share in kept.items())


def add_predictions(profile: dict[str, Any], device_profiles: dict[str, Any]) -> None:
    """Each point gains ``saved_ms``: {device: predicted ms} on every device with a float32
    layer profile (None for a point whose saving is not predicted).

    Args:
        profile: the sensitivity profile; its points are changed in place.
        device_profiles: the device profiles (``read_device_profiles``).
    """
    times = {
        device: entry["float32"]["layers"]
        for device, entry in device_profiles.items()
        if "layers" in (entry.get("float32") or {})
    }
    for point in profile["points"]:
        kept = point.get("macs_kept")
        point["saved_ms"] = (
            None
            if kept is None or point.get("error")
            else {device: predicted_saved_ms(kept, layers) for device, layers in times.items()}
        )


def checked_points(profile: dict[str, Any], device: str, count: int = CHECKED) -> list[Any]:
    """The graph-technique points predicted to save the most on ``device``: the best of
    each technique in turn, then the next best, ``count`` in all.

    Args:
        profile: the sensitivity profile with predictions.
        device: the device the savings are on.
        count: how many points at most.

    Returns:
        The points, in the order chosen.
    """
    ranked: dict[str, list[dict[str, Any]]] = {}
    for point in profile["points"]:
        saved = (point.get("saved_ms") or {}).get(device)
        if saved and saved > 0 and point.get("macs_kept"):
            ranked.setdefault(point["technique"], []).append(point)
    queues = [sorted(ps, key=lambda p: -p["saved_ms"][device]) for ps in ranked.values()]
    queues.sort(key=lambda q: -q[0]["saved_ms"][device])
    chosen: list[dict[str, Any]] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def check_predictions(
    profile: dict[str, Any], task: Any, devices: dict[str, Any], threads: int, console: Any
) -> list[dict[str, Any]]:
    """Measure the chosen points' savings on the first device with a prediction; one entry
    per point (``error`` when its file could not be built or measured).

    Args:
        profile: the sensitivity profile with predictions.
        task, threads: the loaded task; the threads each check runs on.
        devices, console: device name -> pool; where each check's status shows.
    """
    from devicefit.errors import DeviceUnavailable, TrialFailed
    from devicefit.evaluators.base import RoundsSpec
    from devicefit.spaces import get_technique
    from devicefit.spaces.base import ConvertContext, GraphTechnique
    from devicefit.spaces.quantization import Quantization
    from devicefit.spaces.sensitivity import SensitivityJob, job_params

    predicted_on = {d for p in profile["points"] for d in (p.get("saved_ms") or {})}
    device = next((name for name in devices if name in predicted_on), None)
    if device is None:
        return []
    quantization = Quantization()  # by its modes: these profiles are of quantization
    context = ConvertContext(task.input_shape, task.calibration)
    untouched = quantization.convert(task.model, {"mode": "float32"}, context)
    checks = []
    for point in checked_points(profile, device):
        entry = {k: point[k] for k in ("unit", "technique", "level", "setting")}
        entry |= {"device": device, "predicted_ms": point["saved_ms"][device]}
        try:
            technique = get_technique(point["technique"])
            # checked_points: only graph techniques' points predict a saving
            assert isinstance(technique, GraphTechnique)
            job = SensitivityJob(
                point["unit"], tuple(point["layers"]), point["technique"], point["level"],
                point["setting"],
            )  # fmt: skip
            changed = technique.rewrite(task.model, job_params(job, technique)).model
            tflite = quantization.convert(changed, {"mode": "float32"}, context)
            spec = RoundsSpec(threads=threads, rounds=ROUNDS)
            with console.status(f"checking the predicted saving of {_name(entry)} on {device}"):
                blocks = devices[device].measure_rounds([untouched, tflite], spec).block_ms
            entry["untouched_ms"] = median(blocks[0])
            entry["measured_ms"] = median(a - b for a, b in zip(*blocks, strict=True))
        except (DeviceUnavailable, TrialFailed) as exc:
            entry["error"] = str(exc).splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - a check must never stop the study
            entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        checks.append(entry)
    return checks


def add_savings(
    folder: Path,
    profile: dict[str, Any],
    task: Any,
    devices: dict[str, Any],
    threads: int,
    console: Any,
) -> dict[str, Any]:
    """Predictions and their check, added to a finished profile once (a resumed study
    keeps them) and saved; the profile.

    Args:
        folder: the study folder (the device profiles; the profile is saved there).
        profile: the sensitivity profile; changed in place.
        task: the loaded task.
        devices: device name -> pool.
        threads: the threads each measurement runs on.
        console: where each check's line is printed.

    Returns:
        ``profile``, with ``savings_check`` when it is complete.
    """
    from devicefit.search import attrs
    from devicefit.search.artifacts import write_json_atomic
    from devicefit.search.device_profiles import read_device_profiles

    if "savings_check" in profile or not profile.get("complete"):
        return profile
    add_predictions(profile, read_device_profiles(folder) or {})
    profile["savings_check"] = check_predictions(profile, task, devices, threads, console)
    write_json_atomic(folder / attrs.SENSITIVITY_FILE, profile)
    for entry in profile["savings_check"]:
        console.print(_line(entry), markup=False)
    return profile


def _name(entry: dict[str, Any]) -> str:
    return f"{entry['technique']} {entry['level']} on {entry['unit']}"


def _line(entry: dict[str, Any]) -> str:
    head = f"time saved by {_name(entry)} on {entry['device']}: "
    head += f"predicted {entry['predicted_ms']:.3f} ms, "
    if "error" in entry:
        return head + f"not measured ({entry['error']})"
    return head + f"measured {entry['measured_ms']:.3f} ms"

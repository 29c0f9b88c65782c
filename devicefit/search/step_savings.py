"""What each structural step really saves in the file a profile plan converts to, measured
once per study on its primary device, and how the greedy's predictions are corrected by it.

The predictions (search/sensitivity_savings.py) take a setting to save its layers' time in
proportion to the MACs it removes. In a batch-1 int8 file that is far from true on small
convolutions: most of such an op's time is fixed cost, and a spatial factorization adds an
op. On ResNet-20 a spatial low-rank step at rank 0.25 made the int8 file 15% slower while
its prediction was a large saving, and a 25% channel cut saved 3% of it
(benchmarks/int8_step_savings.py); greedy plans full of such steps ended no faster than
the int8 baseline. NetAdapt measures each step on the device instead of predicting it;
doing so per unit would cost a conversion per point, so this measures per technique and
setting: the setting applied to every profiled unit at once, converted as the plan
converts (float32 or int8), timed in paired rounds against the untouched file. The ratio
of what it saved to what the points' predictions summed to is that step's *efficiency*:
each point's predicted saving is multiplied by it when the greedy ranks steps. A step that
made the file slower gets a negative efficiency, and the greedy never takes it.
"""

from __future__ import annotations

from statistics import median
from typing import Any

ROUNDS = 8  # paired rounds of the untouched file and every step's file
# A step predicted to save less than this share of the untouched file is not measured: its
# ratio would be the host's noise (its points keep their predictions).
LEAST_SHARE = 0.01


def step_points(
    points: list[dict[str, Any]], device: str
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The points of each graph technique's setting the greedy may take, by (technique,
    level): not the identity, scored, predicted to save time on ``device``. Only those are
    applied and their predictions summed, so the ratio is of what the greedy adds up.

    Args:
        points: the sensitivity profile's points.
        device: the device the savings are on.

    Returns:
        (technique, level) -> its points, in the profile's order.
    """
    from devicefit.search.greedy_plan import usable_point

    steps: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for point in points:
        if usable_point(point, device):
            steps.setdefault((point["technique"], point["level"]), []).append(point)
    return steps


def with_efficiency(
    points: list[dict[str, Any]], measured: dict[str, Any] | None, device: str, mode: str
) -> list[dict[str, Any]]:
    """``points`` with each saving on ``device`` multiplied by its step's measured
    efficiency (``efficiency`` set on the point) when ``measured`` holds one for that
    device and file; the others as they are.

    Args:
        points: the sensitivity profile's points.
        measured: the profile's ``step_savings`` (None: not measured).
        device: the device the savings are on.
        mode: the file the plan converts to.

    Returns:
        The points, a corrected one as a copy (``points`` itself when nothing applies).
    """
    if not measured or measured.get("device") != device or measured.get("mode") != mode:
        return points
    ratios = {
        (s["technique"], s["level"]): s["efficiency"]
        for s in measured.get("steps", [])
        if s.get("efficiency") is not None
    }
    out = []
    for point in points:
        ratio = ratios.get((point.get("technique"), point.get("level")))
        saved = (point.get("saved_ms") or {}).get(device)
        if ratio is None or saved is None or saved <= 0:  # a point that adds time stays so
            out.append(point)
            continue
        out.append(
            {**point, "saved_ms": {**point["saved_ms"], device: saved * ratio}, "efficiency": ratio}
        )
    return out


def measure_steps(
    points: list[dict[str, Any]],
    device: str,
    evaluator: Any,
    task: Any,
    mode: str,
    threads: int,
) -> list[dict[str, Any]]:
    """Each step's file built from ``task``'s model and timed against the untouched one
    (both converted at ``mode``) in paired rounds on ``threads`` threads of ``evaluator``,
    the device named ``device`` in the points' savings (predicted for the ``mode`` file).

    Returns:
        One entry per step, with ``predicted_ms`` (its points' predictions summed),
        ``untouched_ms``, ``measured_ms`` and ``efficiency`` (their ratio), or ``error``; a
        step predicted to save too little to measure has ``efficiency`` None.

    The sum overstates what units cut together would save where one unit's cut also thins
    the next unit's input (both predictions count that layer); it is kept because the greedy
    adds its steps' predictions up the same way, so the ratio corrects the totals it
    compares."""
    from devicefit.evaluators.base import RoundsSpec
    from devicefit.spaces import get_technique

    entries: list[dict[str, Any]] = []
    files: list[bytes] = [_built(task, [(get_technique("quantization"), {"mode": mode})])]
    for (technique, level), mine in step_points(points, device).items():
        entry: dict[str, Any] = {"technique": technique, "level": level, "units": len(mine)}
        entry["predicted_ms"] = sum(p["saved_ms"][device] for p in mine)
        entries.append(entry)
        try:
            files.append(_built(task, _whole_model_steps(technique, level, mine, mode)))
            entry["file"] = len(files) - 1  # its block in the rounds
        except Exception as exc:  # noqa: BLE001 - a step that cannot be built keeps its prediction
            entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    if len(files) == 1:
        return entries
    spec = RoundsSpec(threads=threads, rounds=ROUNDS)
    try:
        blocks = evaluator.measure_rounds(files, spec).block_ms
    except Exception as exc:  # noqa: BLE001 - unmeasured, every step keeps its prediction
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        for entry in entries:
            if entry.pop("file", None) is not None:
                entry["error"] = why
        return entries
    for entry in entries:
        if "file" in entry:
            _add_measured(entry, blocks[0], blocks[entry.pop("file")])
    return entries


def _add_measured(entry: dict[str, Any], untouched: list[float], changed: list[float]) -> None:
    """A step's measured saving (the median per-round difference from the untouched file)
    and its efficiency: measured over predicted, None when too small to measure."""
    entry["untouched_ms"] = median(untouched)
    entry["measured_ms"] = median(a - b for a, b in zip(untouched, changed, strict=True))
    small = entry["predicted_ms"] < LEAST_SHARE * entry["untouched_ms"]
    entry["efficiency"] = None if small else entry["measured_ms"] / entry["predicted_ms"]


def _whole_model_steps(
    technique: str, level: str, points: list[dict[str, Any]], mode: str
) -> list[tuple[Any, dict[str, Any]]]:
    """The technique's setting on every unit of ``points`` at once, converted at ``mode``,
    as a profile plan applies it."""
    from devicefit.search.greedy_plan import Choice, plan_of
    from devicefit.spaces import get_technique

    choices = [
        Choice(p["unit"], tuple(p["layers"]), technique, level, p["setting"], 0.0, 0.0)
        for p in points
    ]
    return [(get_technique(s.technique), s.params) for s in plan_of(choices, mode, 0).steps]


def _built(task: Any, steps: list[tuple[Any, dict[str, Any]]]) -> bytes:
    """The file of the untouched model with the graph ``steps`` applied, converted by the
    last step (timing does not depend on BatchNorm statistics: not re-estimated)."""
    from devicefit.search.trial import convert_candidate
    from devicefit.spaces.base import GraphTechnique

    model = task.model
    for tech, params in steps:
        if isinstance(tech, GraphTechnique):
            tech.prepare(task.calibration)
            model = tech.rewrite(model, params).model
    return convert_candidate(model, steps, task.input_shape, task.calibration)


def add_step_savings(
    study: Any,
    folder: Any,
    profile: dict[str, Any],
    task: Any,
    devices: dict[str, Any],
    space: Any,
    threads: int,
    console: Any,
) -> dict[str, Any]:
    """Measure the steps on the study's primary device, in the file its profile plans
    convert to, once per study (a resumed one keeps them), saved in the profile as
    ``step_savings``: {"device", "mode", "steps": [...]}; the profile. Nothing when the
    primary device is not among ``devices`` or has no predictions, or when the study's
    plans were made already (a study resumed from before this measurement).

    Args:
        study, folder: the Optuna study; its results folder (the device profiles).
        profile: the sensitivity profile; changed in place and saved.
        task, space: the loaded task; the search space (its whole-model conversions).
        devices, threads: device name -> pool; the threads the rounds run on.
        console: where the status and each step's line show."""
    from devicefit.search import attrs
    from devicefit.search.artifacts import write_json_atomic
    from devicefit.search.conversion_drops import int8_drop
    from devicefit.search.device_profiles import read_device_profiles
    from devicefit.search.greedy_plan import faster_mode, primary_device, timed_in, whole_file_modes
    from devicefit.search.study import study_info

    if "step_savings" in profile or not profile.get("complete"):
        return profile
    info = study_info(study)
    if "profile_plans" in info:
        return profile
    device = primary_device(info)
    profiled = (read_device_profiles(folder) or {}).get(str(device)) or {}
    points = profile.get("points", [])
    if device not in devices or not step_points(points, device):
        return profile
    modes = whole_file_modes(space) or ("float32",)
    mode = faster_mode(profiled, modes, int8_drop(profile), float(info["max_metric_drop"]))
    timed = timed_in(points, profiled, device, mode)
    with console.status(f"measuring what each step saves in the {mode} file on {device}"):
        steps = measure_steps(timed, device, devices[device], task, mode, threads)
    profile["step_savings"] = {"device": device, "mode": mode, "steps": steps}
    write_json_atomic(folder / attrs.SENSITIVITY_FILE, profile)
    for entry in steps:
        console.print(step_line(entry, device, mode), markup=False)
    return profile


def step_line(entry: dict[str, Any], device: str, mode: str) -> str:
    """One measured step as the console and the report say it.

    Args:
        entry: one entry of ``measure_steps``.
        device: the device it was measured on.
        mode: the file it was measured in.

    Returns:
        The line, without markup.
    """
    head = (
        f"{entry['technique']} {entry['level']} on {entry['units']} unit(s), {mode} file on "
        f"{device}: predicted {entry['predicted_ms']:.3f} ms saved, "
    )
    if "error" in entry:
        return head + f"not measured ({entry['error']})"
    said = f"measured {entry['measured_ms']:.3f} of {entry['untouched_ms']:.3f} ms"
    if entry.get("efficiency") is None:
        return head + said + " (too small to correct the prediction)"
    return head + said + f" (efficiency {entry['efficiency']:.2f})"

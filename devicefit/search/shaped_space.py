"""The search space shaped by the profiles: what is not worth searching on this model and
device is left out, and each range ends where the sensitivity profile says the budget is gone.

For each graph technique (the ones whose saving the device profile predicts):
- a unit (per-block or per-layer study) whose strongest setting is predicted to save less
  than ``MIN_TIME_SHARE`` of the untouched model's time is not searched (left at the
  identity); a technique left with no unit, or, searched globally, saving that little on all
  units at once, is not searched at all;
- a range ends at the last profiled setting before the first whose drop before fine-tuning
  is over ``ALLOWANCE`` times the budget (on the unit, or summed over all units for a global
  setting): settings beyond it cost even more and fine-tuning has to win it all back; a
  unit whose mildest setting is over already is left out (a global range keeps its mildest);
- for a technique whose ranges end there, a choice that changes what its setting removes
  (channel pruning's ranking) is held at the value the profile measured with: the ranges
  and the plans hold for that value only (on SRCNN, L1 ranking loses 25 dB at any ratio).

The decisions are made once, when the profiles are complete, stored with the study (so a
resumed study searches the same space) and listed by the report. They shape the sampler's
trials' choices: the baselines and one-technique recipes keep every unit (their settings are
fixed; the ended ranges are the same for every trial, one distribution per parameter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devicefit.search.greedy_plan import ESCALATIONS
from devicefit.spaces import PROFILED_GRAPH_TECHNIQUES

MIN_TIME_SHARE = 0.02
# In budgets: as much as the boldest profile plan may spend (search/greedy_plan.py). At 8
# budgets (the boldest plan before the climb) every built-in and benchmark study ended
# channel pruning at 0.25 and kernel reduction at 1 (SRCNN at 7-3-3), while fine-tuning
# wins back far more: SRCNN at 3-1-1 kernels, past the end, held 0.23 dB of a 0.3 budget
# at 28x (benchmarks/README.md), and on ResNet-20 a cut that leaves it at chance before
# fine-tuning ends within the budget after it. A range the sampler cannot reach is also
# one a plan of the climb cannot be said to it in.
ALLOWANCE = ESCALATIONS[-1]
# Whose ranges end: the profile's settings mean the same for every draw of the technique's
# other parameters. Not low-rank: its profiled ``rank_ratio`` is a share of the ranks, but
# under ``rank_rule = energy`` the same number is a share of the singular-value energy.
RANGE_SHAPED = ("channel_pruning", "kernel_reduction")
LEVELS = ("mild", "medium", "strong")


@dataclass(frozen=True)
class Decision:
    """One change to the space: ``unit`` None for a global range or a whole technique."""

    technique: str
    unit: str | None
    action: str  # "left out", "range" or "held" (a choice held at ``end``)
    why: str
    end: Any = None  # for "range": the setting the range now ends at ...
    param: str | None = None  # ... of this parameter ...
    bound: str | None = None  # ... as its "high" (stronger is higher) or "low" bound

    def to_dict(self) -> dict[str, Any]:
        """The decision as the study stores it.

        Returns:
            Field name -> value.
        """
        return {k: v for k, v in self.__dict__.items()}


def shape(
    profile: dict[str, Any],
    device: str,
    run_ms: float,
    budget: float,
    units: dict[str, dict[str, list[str]]],
    techniques: list[str],
) -> list[Decision]:
    """The decisions for the ``techniques`` searched, ``units`` being the space's units
    per technique (none: searched globally); ``run_ms`` the untouched model's time.

    Args:
        profile: the complete sensitivity profile, with predicted savings.
        device: the device the savings are on (the primary one).
        run_ms: as above, in ms on ``device``.
        budget: the study's metric-drop budget.
        units: as above: technique -> unit -> its layers.
        techniques: the names of the techniques searched.

    Returns:
        The units and techniques left out and the ranges ended.
    """
    decisions: list[Decision] = []
    by_technique: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for point in profile.get("points", []):
        if point.get("error") or point.get("drop") is None:
            continue
        by_technique.setdefault(point["technique"], {}).setdefault(point["unit"], {})[
            point["level"]
        ] = point
    allowance = ALLOWANCE * budget
    for name in techniques:
        levels_by_unit = by_technique.get(name)
        if name not in PROFILED_GRAPH_TECHNIQUES or not levels_by_unit:
            continue
        mine = units.get(name)
        if mine:
            decisions += _per_unit(name, levels_by_unit, mine, device, run_ms, allowance)
        else:
            decisions += _global(name, levels_by_unit, device, run_ms, allowance)
    return decisions


def held_choices(profile: dict[str, Any], decisions: list[Decision]) -> list[Decision]:
    """The choices of each range-shaped technique the profile measured, and did not leave
    out, held at the value it measured with: the ones its identity (the profile's setting
    beside the per-unit one) names.

    Args:
        profile: the sensitivity profile.
        decisions: the decisions ``shape`` made.

    Returns:
        A "held" Decision per such choice.
    """
    from devicefit.spaces import get_technique
    from devicefit.spaces.params import Choice

    gone = {d.technique for d in decisions if d.unit is None and d.action == "left out"}
    profiled = {p["technique"] for p in profile.get("points", []) if p.get("drop") is not None}
    held = []
    for name in sorted((profiled & set(RANGE_SHAPED)) - gone):
        tech = get_technique(name)
        for key, value in tech.identity_params().items():
            if isinstance(tech.default_ranges.get(key), Choice):
                why = f"the profile ranked by {key} {value}; its ranges hold for that only"
                held.append(Decision(name, None, "held", why, value, key))
    return held


def change_text(decision: dict[str, Any]) -> str:
    """What a stored decision changed, in words (the console's line and the report's cell).

    Args:
        decision: a stored decision (``Decision.to_dict``).

    Returns:
        "left out", "<param> held at <value>" or "<param> ends at <setting>".
    """
    if decision["action"] == "left out":
        return "left out"
    if decision["action"] == "held":
        return f"{decision['param']} held at {decision['end']}"
    return f"{decision.get('param') or 'range'} ends at {decision['end']}"


def _saved(point: dict[str, Any], device: str) -> float:
    return float((point.get("saved_ms") or {}).get(device) or 0.0)


def _end(levels: dict[str, dict[str, Any]], drop_of: Any, allowance: float) -> tuple[bool, Any]:
    """(whether some level is over the allowance, the setting of the last level before
    the first such one: None when even the mildest is over)."""
    within = None
    for level in LEVELS:
        if level not in levels:
            continue
        if drop_of(level) > allowance:
            return True, within
        within = levels[level]["setting"]
    return False, within


def _per_unit(
    name: str,
    levels_by_unit: dict[str, dict[str, dict[str, Any]]],
    units: dict[str, list[str]],
    device: str,
    run_ms: float,
    allowance: float,
) -> list[Decision]:
    out = []
    kept = 0
    for unit in units:
        levels = levels_by_unit.get(unit)
        if not levels:
            kept += 1  # not profiled at this granularity: searched as asked
            continue
        most = max(_saved(p, device) for p in levels.values())
        if most < MIN_TIME_SHARE * run_ms:
            why = f"saves at most {most:.3g} of {run_ms:.3g} ms ({most / run_ms:.1%})"
            out.append(Decision(name, unit, "left out", why))
            continue
        over, end = _end(levels, lambda lv, ls=levels: float(ls[lv]["drop"]), allowance)
        if over and end is None:
            mildest = next(levels[lv] for lv in LEVELS if lv in levels)
            why = f"its mildest setting drops {float(mildest['drop']):.3g} before fine-tuning"
            out.append(Decision(name, unit, "left out", why + f" (over {allowance:g})"))
            continue
        kept += 1
        if over and name in RANGE_SHAPED:
            why = f"drop before fine-tuning over {allowance:g} past {end}"
            out.append(Decision(name, unit, "range", why, end, *_param(name)))
    if not kept:
        out.append(Decision(name, None, "left out", "no unit saves enough time"))
    return out


def _global(
    name: str,
    levels_by_unit: dict[str, dict[str, dict[str, Any]]],
    device: str,
    run_ms: float,
    allowance: float,
) -> list[Decision]:
    """A global setting acts on every unit at once: its drop and saving are the units'
    summed (an estimate: drops compound, savings of neighbouring units overlap)."""
    summed: dict[str, dict[str, Any]] = {}
    for level in LEVELS:
        points = [ls[level] for ls in levels_by_unit.values() if level in ls]
        if points:
            summed[level] = {
                "setting": points[0]["setting"],
                "drop": sum(float(p["drop"]) for p in points),
                "saved": sum(_saved(p, device) for p in points),
            }
    if not summed:
        return []
    most = max(s["saved"] for s in summed.values())
    if most < MIN_TIME_SHARE * run_ms:
        why = f"saves at most {most:.3g} of {run_ms:.3g} ms ({most / run_ms:.1%})"
        return [Decision(name, None, "left out", why)]
    over, end = _end(summed, lambda lv: summed[lv]["drop"], allowance)
    if not over or name not in RANGE_SHAPED:
        return []
    # Even the mildest over: the range still reaches it (fine-tuning may win it back).
    end = end if end is not None else next(iter(summed.values()))["setting"]
    why = f"summed drop before fine-tuning over {allowance:g} past {end}"
    return [Decision(name, None, "range", why, end, *_param(name))]


def _param(technique: str) -> tuple[str, str]:
    """The technique's per-unit parameter and which of its bounds is the stronger end."""
    from devicefit.spaces.sensitivity import SENSITIVITY_LEVELS

    param, identity, values = SENSITIVITY_LEVELS[technique]
    return param, "high" if values[-1] > identity else "low"


def add_space_shaping(study: Any, folder: Any, space: Any, console: Any) -> None:
    """Decide the shaping once the profiles are complete (once per study: stored with it)
    and apply the stored decisions to ``space``.

    Args:
        study: the Optuna study; the decisions are stored in its attributes.
        folder: its results folder, holding the profiles.
        space: its search space; shaped in place.
        console: where each new decision is listed.
    """
    from devicefit.search.device_profiles import read_device_profiles
    from devicefit.search.sensitivity_profiles import read_sensitivity
    from devicefit.search.study import set_study_info, study_info

    info = study_info(study)
    if "space_shaping" not in info:
        profile = read_sensitivity(folder)
        device = next((o["device"] for o in info["objectives"] if o.get("device")), None)
        timed = ((read_device_profiles(folder) or {}).get(str(device)) or {}).get("float32")
        median = (timed or {}).get("median_ms")
        if profile is None or not profile.get("complete") or not median:
            return
        decisions = shape(
            profile,
            str(device),
            float(median),
            float(info["max_metric_drop"]),
            space.units,
            [t.name for t in space.techniques],
        )
        decisions += held_choices(profile, decisions)
        # Only what changes the space is kept (a range already ending there is not news).
        info["space_shaping"] = space.shape([d.to_dict() for d in decisions])
        set_study_info(study, space_shaping=info["space_shaping"])
        for d in info["space_shaping"]:
            where = f" on {d['unit']}" if d["unit"] else ""
            what = change_text(d)
            console.print(f"space: {d['technique']}{where} {what}: {d['why']}", markup=False)
        return
    space.shape(info["space_shaping"])

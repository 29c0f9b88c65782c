"""Profile-guided plans, made before the search samples anything (NetAdapt-style greedy).

From the sensitivity profile (what each unit gives up to each setting, without fine-tuning)
and the time each setting is predicted to save on the primary device (from the device
profile, in the file the plan converts to: float32 or int8), the greedy repeatedly takes
the step — a unit, a graph technique, a setting, or a stronger setting of a unit's
technique — with the most time saved per metric lost, until the summed drops reach an
allowance; the plan then fine-tunes (longer the more time it saves) and converts with the
faster of the float32 and int8 files of the untouched model — int8 only when its own loss
(search/conversion_drops.py) fits in the budget, and then that loss comes off every
allowance. Drops before fine-tuning overstate what remains after it, so plans are made for
a few allowances (``ALLOWANCES`` times the budget): the first is the cautious one, the
others its stronger neighbours. They run as fixed trials after the recipes, so the sampler
starts beside a strong multi-technique point.

A prediction is the layer time times the share of MACs a setting removes; in a batch-1
int8 file that overstates what small convolutions' cuts save and misses the op a spatial
factorization adds, so where the study measured each setting on the whole model
(search/step_savings.py), every prediction of that setting is multiplied by what it
measured to save per ms predicted, and a setting that made the file slower is never taken.

How much fine-tuning wins back differs by orders of magnitude between models: on a small
residual net a channel cut that leaves it at chance before fine-tuning ends within the
budget after it. So the plans go on growing as NetAdapt does, on what fine-tuning reached:
each plan of ``ESCALATIONS`` runs only when the one before it ended within the metric
budget (its spec names that plan, ``after``), and the first that does not (over the
budget, or failed) ends the climb. When no step fits the smaller allowances (every cut
costs more before fine-tuning), the first plan made is the first to run, unconditionally.

Drops before fine-tuning also understate what many small steps cost together: on
ResNet-20, once measured savings ranked whole-block removals first, the 1x plan (5 blocks
and 12 channel cuts, each step's drop small) ended 1.4 points down after fine-tuning. So
below the first plan the greedy descends: plans at ``DESCENTS`` of its allowance, each
run only when the one above it missed the budget (its spec names that plan, ``unless``),
with the same bisection between the last that missed and the first that held.

The climb's steps are far apart (125x to 300x of the budget), so where it ends it bisects:
between the last plan that held and the first that did not, a plan at the geometric middle
of their allowances runs (its spec names both, ``between``), and then one in the half that
is still open, ``BISECTIONS`` levels deep. On ResNet-20 the climb held at 125x (0.371 ms)
and fell 3.3 points over the budget at 300x (0.254 ms): the fastest plan within the budget
lies in between, and only a run can find it. The allowance can only pick among the
profile's three settings per technique, so where two neighbours of the climb differ in one
unit's setting, the settings between those two run as well (``between_settings``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from devicefit.search.attrs import PROFILE_PLAN
from devicefit.spaces import PROFILED_GRAPH_TECHNIQUES
from devicefit.spaces.base import PER_LAYER, Plan, Step

ALLOWANCES = (1.0, 3.0, 8.0)  # summed drops before fine-tuning, in budgets
# Stronger plans, each run only when the plan before it held the budget after fine-tuning.
ESCALATIONS = (20.0, 50.0, 125.0, 300.0)
BISECTIONS = 2  # levels of plans between the last that held and the first that did not
# Milder plans, as shares of the first plan's allowance, each run only when the plan above
# it missed the budget.
DESCENTS = (0.3, 0.1)
_FLOOR = 0.01  # the least metric a step is charged, in budgets (a free step still ranks)


@dataclass(frozen=True)
class Choice:
    """One unit's setting in a greedy plan, with what the profile says it costs and saves."""

    unit: str
    layers: tuple[str, ...]
    technique: str
    level: str
    setting: Any
    drop: float
    saved_ms: float
    # The share of MACs each layer keeps, as ((layer, share), ...); None: not counted.
    kept: tuple[tuple[str, float], ...] | None = None
    # What its step measured to save per ms predicted (search/step_savings.py): saved_ms
    # is already multiplied by it; 1.0 where the step was not measured.
    efficiency: float = 1.0


def greedy_choices(
    points: list[dict[str, Any]],
    device: str,
    allowance: float,
    floor: float,
    layer_ms: dict[str, float] | None = None,
) -> list[Choice]:
    """The units' settings the greedy takes, in the order it took them: each step the one
    with the most ms saved per metric lost (charged at least ``floor``) among those whose
    summed drop stays within ``allowance``. A step sets one technique's setting on a unit:
    beside the unit's other techniques, or in place of them all (a cheap low-rank step
    taken first must not lock a unit out of the deeper channel cut a larger allowance can
    pay for). Every step saves more than the state before it, so the greedy ends.

    A unit holds two techniques at once only when the untouched file's time per layer
    (``layer_ms``) and each setting's share of MACs kept per layer (``macs_kept``) tell
    what the second saves on what the first left: a channel cut that keeps half of a
    convolution's MACs and a kernel 5x5 instead of 9x9 keep 0.5 x 25/81 of them together
    (the shares multiply). Their drops are taken to add up. Without those, or with depth
    pruning (the unit is gone), a unit holds one setting of one technique: on SRCNN that
    capped every plan at one technique per convolution and the climb at 20x of the budget.

    Args:
        points, device: the sensitivity profile's points; the device their savings are on.
        allowance, floor: the summed drop allowed; the least a step is charged (metric units).
        layer_ms: as above (None: one technique per unit)."""
    options = [o for o in (_option(p, device) for p in points) if o is not None]
    held: dict[str, dict[str, Choice]] = {}
    spent = 0.0
    order: list[Choice] = []
    while True:
        best, best_rate = None, 0.0
        for option in options:
            now = held.get(option.unit, {})
            for after in _states_after(now, option, layer_ms is not None):
                gain = _saved(after, layer_ms) - _saved(now, layer_ms)
                cost = _drop(after) - _drop(now)
                if gain <= 0 or spent + cost > allowance:
                    continue
                rate = gain / max(cost, floor)
                if rate > best_rate:
                    best, best_rate = after, rate
        if best is None:
            return order
        unit = next(iter(best.values())).unit
        now = held.get(unit, {})
        spent += _drop(best) - _drop(now)
        held[unit] = best
        kept = [c for c in order if c.unit != unit or c in best.values()]
        order = kept + [c for c in best.values() if c not in kept]


def _states_after(now: dict[str, Choice], option: Choice, stacks: bool) -> list[dict[str, Choice]]:
    """A unit's techniques after ``option`` is taken: in place of all it holds, and (when
    techniques ``stacks`` and neither is depth pruning) beside the others it holds."""
    alone = {option.technique: option}
    others = {t: c for t, c in now.items() if t != option.technique}
    depth = "depth_pruning" in (option.technique, *others)
    counted = all(c.kept is not None for c in (option, *others.values()))
    if not stacks or depth or not others or not counted:
        return [alone]
    return [alone, {**others, option.technique: option}]


def _drop(state: dict[str, Choice]) -> float:
    """A unit's techniques' drops, taken to add up."""
    return sum(c.drop for c in state.values())


def _saved(state: dict[str, Choice], layer_ms: dict[str, float] | None) -> float:
    """What a unit's techniques save together: one alone, its own prediction; more, the
    layer times over the product of their shares of MACs kept."""
    if len(state) <= 1 or layer_ms is None:
        return sum(c.saved_ms for c in state.values())
    from devicefit.search.sensitivity_savings import predicted_saved_ms

    shares: dict[str, float] = {}
    for choice in state.values():
        for layer, share in choice.kept or ():
            shares[layer] = shares.get(layer, 1.0) * share
    # The techniques' measured efficiencies, weighted by what each was predicted to save
    # (a choice in a plan saves something: its efficiency is positive).
    predicted = sum(c.saved_ms / c.efficiency for c in state.values())
    efficiency = sum(c.saved_ms for c in state.values()) / predicted if predicted else 1.0
    return efficiency * predicted_saved_ms(shares, layer_ms)


def usable_point(point: dict[str, Any], device: str) -> bool:
    """Whether the greedy may take a profile point: a graph technique's setting other than
    the identity, scored, and predicted to save time on ``device``.

    Args:
        point: one point of the sensitivity profile, as saved.
        device: the device the plans are made for.

    Returns:
        True when the greedy may take it.
    """
    saved = (point.get("saved_ms") or {}).get(device)
    return (
        point.get("technique") in PROFILED_GRAPH_TECHNIQUES
        and point.get("level") != "identity"
        and point.get("drop") is not None
        and not point.get("error")
        and saved is not None
        and saved > 0
    )


def _option(point: dict[str, Any], device: str) -> Choice | None:
    if not usable_point(point, device):
        return None
    return Choice(
        point["unit"],
        tuple(point.get("layers") or ()),
        point["technique"],
        point["level"],
        point["setting"],
        max(0.0, float(point["drop"])),
        float(point["saved_ms"][device]),
        tuple(sorted(kept.items())) if (kept := point.get("macs_kept")) else None,
        float(point.get("efficiency", 1.0)),
    )


def plan_of(
    choices: list[Choice],
    mode: str,
    epochs: int,
    whole_ms: float | None = None,
    layer_ms: dict[str, float] | None = None,
) -> Plan:
    """The plan that applies ``choices`` (each unit's setting on its layers, the identity
    elsewhere), fine-tunes and converts at ``mode``. It fine-tunes for ``epochs``, and more
    the more of the untouched file's time (``whole_ms``) its choices save: a net with half
    its branches gone needs longer to recover than one a few channels thinner (on ResNet-20
    a plan removing four of seven branches ended 3.6 points down after 3 epochs; the four
    alone, 0.8 after 5). Techniques stacked on one unit count once, as the greedy counted
    them on ``layer_ms``: two that each save 60% of a unit's time save 84% together, not
    120%.

    Args:
        choices: the greedy's choices.
        mode: the whole-model conversion the plan ends with.
        epochs: the fine-tuning epochs before those earned by the time saved.
        whole_ms: the untouched file's time (None: no epochs earned).
        layer_ms: the untouched file's time per layer (None: each choice's own prediction).

    Returns:
        The Plan; with no choices, the conversion alone, without fine-tuning.
    """
    from devicefit.search.extra_epochs import structural_epochs
    from devicefit.spaces import get_technique
    from devicefit.spaces.sensitivity import SENSITIVITY_LEVELS

    steps = []
    for name in PROFILED_GRAPH_TECHNIQUES:
        mine = [c for c in choices if c.technique == name]
        if not mine:
            continue
        param = SENSITIVITY_LEVELS[name][0]
        per_layer = {layer: {param: c.setting} for c in mine for layer in c.layers}
        steps.append(Step(name, {**get_technique(name).identity_params(), PER_LAYER: per_layer}))
    steps.append(Step("quantization", {"mode": mode}))
    if len(steps) == 1:
        return Plan(tuple(steps), 0)
    saved = plan_saved_ms(choices, layer_ms) / whole_ms if whole_ms else 0.0
    return Plan(tuple(steps), epochs + structural_epochs(epochs, saved))


def plan_saved_ms(choices: list[Choice], layer_ms: dict[str, float] | None = None) -> float:
    """The time ``choices`` save together, as the greedy counted it: per unit, its
    techniques' shares of MACs kept multiplied over ``layer_ms`` (one alone: its own
    prediction).

    Args:
        choices: a plan's choices.
        layer_ms: the untouched file's time per layer (None: the choices' own predictions
            summed).

    Returns:
        The predicted saving in ms.
    """
    units: dict[str, dict[str, Choice]] = {}
    for choice in choices:
        units.setdefault(choice.unit, {})[choice.technique] = choice
    return sum(_saved(state, layer_ms) for state in units.values())


def faster_mode(
    device_profile: dict[str, Any],
    modes: tuple[str, ...] = ("float32", "int8"),
    int8_drop: float | None = None,
    budget: float = math.inf,
) -> str:
    """int8 when the study may convert to it (``modes``), the untouched model's int8 file
    ran faster than its float32 one on the device (full-integer kernels are not faster
    everywhere) and the int8 file's own metric drop (``int8_drop``, None: not scored, as in
    a study made before it was) fits in the ``budget``: nothing wins a post-training
    conversion's loss back. Else float32.

    Args:
        device_profile: the device's entry of ``device_profile.json``.
        modes: the whole-model conversions the study may use.
        int8_drop: as above.
        budget: the study's metric-drop budget.

    Returns:
        "int8" or "float32".
    """
    timed = {
        mode: (device_profile.get(mode) or {}).get("median_ms") for mode in ("float32", "int8")
    }
    if "int8" not in modes or timed["int8"] is None or timed["float32"] is None:
        return "float32"
    fits = int8_drop is None or int8_drop <= budget
    return "int8" if timed["int8"] < timed["float32"] and fits else "float32"


def savings_file(device_profile: dict[str, Any], mode: str) -> str:
    """The file whose times a plan converting at ``mode`` is ranked on: its own where its
    layers were timed, else the float32 one (the sensitivity profile's savings).

    Args:
        device_profile: the device's entry of ``device_profile.json``.
        mode: the conversion the plan makes.

    Returns:
        ``mode`` or "float32": a key of ``device_profile``.
    """
    return mode if (device_profile.get(mode) or {}).get("layers") else "float32"


def untouched_ms(device_profile: dict[str, Any], mode: str) -> float | None:
    """The untouched model's time in the file whose times ``timed_in`` ranks a plan's
    savings on, the whole a plan's savings are a share of.

    Args:
        device_profile: the device's entry of ``device_profile.json``.
        mode: the conversion the plan makes.

    Returns:
        Its median in ms; None when that file was not timed.
    """
    return (device_profile.get(savings_file(device_profile, mode)) or {}).get("median_ms")


def said_to_sampler(space: Any, plan: Plan) -> tuple[dict[str, Any], Plan] | None:
    """The parameters under which the sampler learns from a profile plan, and the plan to
    run (``space.expressed`` of the same settings): a plan fine-tuned longer than the
    space's epochs is said at its most epochs (the settings are what the sampler can
    reuse; its own trials earn more epochs as they need them, ``extra_epochs``) and runs
    with its own.

    Args:
        space: the study's search space.
        plan: a profile plan.

    Returns:
        (the sampler's parameters, the plan to run); None when the space cannot express the
        plan.
    """
    from dataclasses import replace

    epochs = plan.finetune_epochs
    said = space.expressed(replace(plan, finetune_epochs=min(epochs, space.epochs.high)))
    if said is None:
        return None
    return said[0], replace(said[1], finetune_epochs=epochs)


def timed_in(
    points: list[dict[str, Any]], device_profile: dict[str, Any], device: str, mode: str
) -> list[dict[str, Any]]:
    """The points with the time each saves in the file the plan converts to: a layer's
    share of an int8 file's time differs from its share of the float32 one's (the digits
    Dense head: 26% of float32, 41% of int8), so an int8 plan is ranked on int8 times.

    Args:
        points: the sensitivity profile's points.
        device_profile: the device's entry of ``device_profile.json``.
        device: the device the savings are for.
        mode: the conversion the plan makes.

    Returns:
        ``points`` itself when the plan is ranked on float32 times; else copies whose
        ``saved_ms`` holds only ``device``'s saving, predicted on that file's layer times
        (points without ``macs_kept`` or a saving on ``device`` as they are).
    """
    from devicefit.search.sensitivity_savings import predicted_saved_ms

    if savings_file(device_profile, mode) == "float32":
        return points
    layers = device_profile[mode]["layers"]
    return [
        {**p, "saved_ms": {device: predicted_saved_ms(p["macs_kept"], layers)}}
        if p.get("macs_kept") and (p.get("saved_ms") or {}).get(device) is not None
        else p
        for p in points
    ]


def greedy_plans(
    profile: dict[str, Any],
    device_profiles: dict[str, Any],
    device: str,
    budget: float,
    epochs: int,
    modes: tuple[str, ...] = ("float32", "int8"),
    int8_drop: float | None = None,
) -> list[dict[str, Any]]:
    """One fixed-trial spec per distinct non-empty plan, cautious first: {"attrs": {profile_plan:
    name}, "params": {}, "plan": Plan as a dict, "choices": [...]}, and for a plan of
    ``ESCALATIONS`` "after": the plan that must hold the budget before it runs; a plan of
    ``DESCENTS`` "unless": the plan that must miss it before it runs; a bisecting plan "between":
    [the plan that must hold, the plan that must not]. The climb's plans come first, cautious first,
    then the descent's, each milder than the one before, then the bisections.

    Args:
        profile, device_profiles: the sensitivity profile; the device profiles by device.
        device, budget, epochs: the primary device; the metric-drop budget; fine-tuning epochs.
        modes, int8_drop: the whole-model conversions the study may use; what the untouched model's
            int8 file loses (None: not scored). An int8 plan's steps share each allowance with that
            loss."""
    from devicefit.search.step_savings import with_efficiency

    profiled = device_profiles.get(device) or {}
    mode = faster_mode(profiled, modes, int8_drop, budget)
    points = timed_in(profile.get("points", []), profiled, device, mode)
    planner = _Planner(
        points=with_efficiency(points, profile.get("step_savings"), device, mode),
        device=device,
        budget=budget,
        epochs=epochs,
        mode=mode,
        # The conversion's loss is paid after fine-tuning: it comes off every allowance whole.
        charged=max(0.0, int8_drop or 0.0) if mode == "int8" else 0.0,
        whole_ms=untouched_ms(profiled, mode),
        layer_ms=(profiled.get(savings_file(profiled, mode)) or {}).get("layers"),
    )
    climb = planner.climb()
    descent = planner.descend(climb)
    name = PROFILE_PLAN
    for (low, lower), (high, higher) in zip(climb, climb[1:], strict=False):
        # The allowances' plans all run: only an escalation can be where the climb ends.
        ends = high in ESCALATIONS
        planner.bisect((low, lower["attrs"][name]), (high, higher["attrs"][name]), BISECTIONS, ends)
    for (high, higher), (low, lower) in zip(descent, descent[1:], strict=False):
        # A descent's step is where the plans end when the milder plan holds.
        planner.bisect((low, lower["attrs"][name]), (high, higher["attrs"][name]), BISECTIONS, True)
    return planner.specs


@dataclass
class _Planner:
    """The greedy plans of one device and conversion mode, made once each: ``specs`` in
    the order they are enqueued, ``made`` each plan's choices by name."""

    points: list[dict[str, Any]]
    device: str
    budget: float
    epochs: int
    mode: str
    charged: float  # the conversion's loss, taken off every allowance
    whole_ms: float | None
    layer_ms: dict[str, float] | None
    specs: list[dict[str, Any]] = field(default_factory=list)
    made: dict[str, list[Choice]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def planned(self, factor: float) -> tuple[list[Choice], Plan]:
        """The greedy's choices at ``factor`` budgets (less the conversion's loss), and
        their plan.

        Args:
            factor: the allowance, in budgets.

        Returns:
            (the choices in the order taken, their Plan).
        """
        # A zero budget still ranks steps that cost nothing (or gain metric) first.
        floor = max(_FLOOR * self.budget, 1e-9)
        allowance = factor * self.budget - self.charged
        choices = greedy_choices(self.points, self.device, allowance, floor, self.layer_ms)
        return choices, self._plan(choices)

    def _plan(self, choices: list[Choice]) -> Plan:
        return plan_of(choices, self.mode, self.epochs, self.whole_ms, self.layer_ms)

    def _new(self, name: str, choices: list[Choice], plan: Plan) -> dict[str, Any] | None:
        """The spec of a plan not made before (None for one that was), remembered."""
        if plan.to_json() in self.seen:
            return None
        self.seen.add(plan.to_json())
        self.made[name] = choices
        return _spec(name, plan, choices)

    def climb(self) -> list[tuple[float, dict[str, Any]]]:
        """The plans of the allowances and escalations, cautious first; an escalation
        runs once the plan before it held.

        Returns:
            (allowance in budgets, spec) of each new plan, also added to ``specs``.
        """
        climb: list[tuple[float, dict[str, Any]]] = []
        for factor in (*ALLOWANCES, *ESCALATIONS):
            choices, plan = self.planned(factor)
            spec = self._new(f"greedy-{factor:g}x", choices, plan) if choices else None
            if spec is None:
                continue
            if factor in ESCALATIONS and climb:
                spec["after"] = climb[-1][1]["attrs"][PROFILE_PLAN]
            climb.append((factor, spec))
            self.specs.append(spec)
        return climb

    def descend(
        self, climb: list[tuple[float, dict[str, Any]]]
    ) -> list[tuple[float, dict[str, Any]]]:
        """Below the first plan: milder ones, each run only once the one above it missed.

        Args:
            climb: what ``climb`` returned.

        Returns:
            (allowance, spec) of the climb's first plan, then of each new milder plan (also
            added to ``specs``); empty when the climb is.
        """
        descent = climb[:1]
        for share in DESCENTS if climb else ():
            factor = climb[0][0] * share
            choices, plan = self.planned(factor)
            spec = self._new(f"greedy-{factor:.3g}x", choices, plan) if choices else None
            if spec is None:
                continue
            spec["unless"] = descent[-1][1]["attrs"][PROFILE_PLAN]
            self.specs.append(spec)
            descent.append((factor, spec))
        return descent

    def refine(self, low: str, high: str) -> None:
        """Between two plans that differ in one unit's setting, the settings in between,
        each run once the one before it held (the first once ``low`` held) and ``high``
        did not.

        Args:
            low, high: the two plans' names; the new specs are added to ``specs``.
        """
        before = low
        for unit, value, choices in between_settings(self.made[low], self.made[high]):
            plan = self._plan(choices)
            if plan.to_json() in self.seen:
                continue
            self.seen.add(plan.to_json())
            name = f"{high}-{unit}-{value:g}"
            self.specs.append(_spec(name, plan, choices) | {"between": [before, high]})
            before = name

    def bisect(
        self, low: tuple[float, str], high: tuple[float, str], levels: int, ends: bool
    ) -> None:
        """Plans between the allowances ``low`` (held) and ``high`` (did not), by name;
        at the last level, where the climb ``ends``, the settings between the two where
        they differ in one.

        Args:
            low, high: (allowance in budgets, plan name) of each end.
            levels: how many levels deeper to bisect.
            ends: whether the climb may end between them (then ``refine`` at the last
                level).
        """
        if levels == 0:
            if ends:
                self.refine(low[1], high[1])
            return
        factor = (low[0] * high[0]) ** 0.5
        choices, plan = self.planned(factor)
        name = f"greedy-{factor:.3g}x"
        spec = self._new(name, choices, plan)
        if spec is None:  # the same plan as one end: narrow the gap and look again
            self.bisect(low, (factor, high[1]), levels - 1, ends)
            self.bisect((factor, low[1]), high, levels - 1, ends)
            return
        self.specs.append(spec | {"between": [low[1], high[1]]})
        self.bisect(low, (factor, name), levels - 1, ends)  # runs if this one did not hold
        self.bisect((factor, name), high, levels - 1, ends)  # runs if this one held


def between_settings(
    low: list[Choice], high: list[Choice]
) -> list[tuple[str, float, list[Choice]]]:
    """Where two plans' choices differ only in one unit's setting of one
    technique, ``high``'s choices with that setting at each value strictly between the
    two, nearest ``low``'s first: every integer between two integer settings (a kernel
    shrunk by 2 and by 3 between 1 and 4), else the middle. (unit, value, choices) each;
    none when they differ in more, or in a setting that is not a number.

    The profile scores three settings per technique, and the allowance's bisection can
    only pick among them: on SRCNN the plan that held kept patch_extraction's kernel at
    7x7 (29.6x float32, -0.26 dB) and the next took it to 1x1 (114x, -1.09 dB); nothing
    the greedy could make lay between. The changed choice keeps ``high``'s predicted
    saving and shares of MACs kept (a plan's fine-tuning epochs are read from them).

    Args:
        low, high: the choices of the plan that held and of the one that did not.

    Returns:
        The (unit, value, choices) as above, nearest ``low`` first.
    """
    from dataclasses import replace

    from devicefit.spaces.sensitivity import SENSITIVITY_LEVELS

    def settings(choices: list[Choice]) -> dict[tuple[str, str], Any]:
        """(unit, technique) -> setting, of each of a plan's ``choices``."""
        return {(c.unit, c.technique): c.setting for c in choices}

    was, now = settings(low), settings(high)
    differ = [key for key in was.keys() | now.keys() if was.get(key) != now.get(key)]
    if len(differ) != 1 or differ[0] not in now:
        return []
    (unit, technique) = key = differ[0]
    start, end = was.get(key, SENSITIVITY_LEVELS[technique][1]), now[key]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (start, end)):
        return []
    if isinstance(start, int) and isinstance(end, int):
        step = 1 if end > start else -1
        values: list[float] = list(range(start + step, end, step))
    else:
        values = [round((start + end) / 2, 3)] if start != end else []
    out = []
    for value in values:
        choices = [
            replace(c, setting=value, level=f"at {value:g}") if (c.unit, c.technique) == key else c
            for c in high
        ]
        out.append((unit, value, choices))
    return out


def _spec(name: str, plan: Plan, choices: list[Choice]) -> dict[str, Any]:
    from dataclasses import asdict

    from devicefit.search import attrs

    return {
        "attrs": {attrs.PROFILE_PLAN: name},
        "params": {},
        "plan": plan.to_dict(),
        "choices": [
            {k: v for k, v in asdict(c).items() if k != "kept"} | {"layers": list(c.layers)}
            for c in choices
        ],
    }


def described(choices: list[dict[str, Any]]) -> str:
    """A stored plan's choices as the report and the console list them, in order taken.

    Args:
        choices: the plan's stored choices (``profile_plans`` in the study).

    Returns:
        "technique level on unit" of each, comma-separated.
    """
    return ", ".join(f"{c['technique']} {c['level']} on {c['unit']}" for c in choices)


def primary_device(info: dict[str, Any]) -> str | None:
    """The device of a study's first device objective: the one its plans are made for.

    Args:
        info: the study's devicefit attributes (``study_info``).

    Returns:
        The device name; None when no objective names a device.
    """
    return next((o["device"] for o in info["objectives"] if o.get("device")), None)


def whole_file_modes(space: Any) -> tuple[str, ...]:
    """The whole-model conversions a study's space may choose (none without quantization).

    Args:
        space: the study's search space.

    Returns:
        The quantization ``mode`` options, in the space's order.
    """
    return tuple(getattr(space.ranges.get("quantization", {}).get("mode"), "options", ()))


def add_profile_plans(study: Any, folder: Any, space: Any, console: Any) -> None:
    """Put the greedy plans among the study's fixed trials, before the combined recipes
    (which wait for every recipe); once per study, so a resumed study keeps its plans.

    Args:
        study: the Optuna study; the plans are stored in its attributes.
        folder: its results folder, holding the sensitivity and device profiles.
        space: its search space.
        console: where each plan is listed.
    """
    from devicefit.search.conversion_drops import int8_drop
    from devicefit.search.device_profiles import read_device_profiles
    from devicefit.search.sensitivity_profiles import read_sensitivity
    from devicefit.search.study import COMBINED, set_study_info, study_info

    info = study_info(study)
    profile = read_sensitivity(folder)
    if "profile_plans" in info or profile is None or not profile.get("complete"):
        return
    device = primary_device(info)
    specs = greedy_plans(
        profile,
        read_device_profiles(folder) or {},
        str(device),
        float(info["max_metric_drop"]),
        space.epochs.high,
        whole_file_modes(space) or ("float32",),
        int8_drop(profile),
    )
    for spec in specs:  # what the sampler reads of the plan, where the space can say it
        said = said_to_sampler(space, Plan.from_dict(spec["plan"]))
        if said is not None:
            spec["params"], spec["plan"] = said[0], said[1].to_dict()
    fixed = list(info.get("fixed_trials", []))
    at = next((n for n, s in enumerate(fixed) if s["attrs"].get("recipe") == COMBINED), len(fixed))
    fixed[at:at] = [{k: v for k, v in s.items() if k != "choices"} for s in specs]
    plans = {s["attrs"]["profile_plan"]: s["choices"] for s in specs}
    set_study_info(study, fixed_trials=fixed, profile_plans=plans)
    for spec in specs:
        when = f" (runs if {spec['after']} holds the budget)" if "after" in spec else ""
        if "unless" in spec:
            when = f" (runs if {spec['unless']} misses the budget)"
        if "between" in spec:
            low, high = spec["between"]
            when = f" (runs if {low} holds the budget and {high} does not)"
        name = spec["attrs"]["profile_plan"]
        steps = Plan.from_dict(spec["plan"]).steps
        mode = next((s.params.get("mode") for s in steps if s.technique == "quantization"), None)
        line = f"profile plan {name}{when}: {described(spec['choices'])}; {mode or 'float32'} file"
        console.print(line, markup=False)

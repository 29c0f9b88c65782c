"""Creating, opening and repairing devicefit studies in any Optuna storage."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from devicefit import __version__
from devicefit.config import (
    DEVICE_OBJECTIVE_FIELDS,
    StudyConfig,
    config_from_stored,
    stored_config,
)
from devicefit.errors import UsageError
from devicefit.evaluators.devices import device_pools
from devicefit.evaluators.metrics import Metric
from devicefit.samplers import SAMPLERS
from devicefit.search import attrs
from devicefit.search.artifacts import write_json_atomic
from devicefit.search.storages import given_storage, open_storage

BASELINE_MODES = ("float32", "float16", "int8")
COMBINED = "combined"  # the recipe attr of the combined-recipes trial
FIXED_KEYS = (attrs.BASELINE, attrs.RECIPE, attrs.PROFILE_PLAN)  # attrs naming a fixed trial


def enqueue_next_fixed(study: optuna.Study) -> bool:
    """Enqueue the first fixed trial (baseline, recipe, profile plan, combined recipe) the
    study does not hold yet; a profile plan that waits on another (``after``) is passed
    over while that one has not held the budget, a milder one (``unless``) while the plan
    above it has not missed it, one that bisects (``between``) while the first has not
    held it and the second has not missed it.

    Idempotent and derived from the trials themselves: a driver killed at any point
    neither loses a fixed trial for good nor enqueues one twice.

    Args:
        study: the study; its stored ``fixed_trials`` and its trials decide.

    Returns:
        True when a trial was enqueued; False when none is due now (or the combined recipe
        waits).
    """
    trials = study.get_trials(deepcopy=False)
    present = set()
    for trial in trials:
        for key in FIXED_KEYS:
            if key in trial.user_attrs:
                present.add((key, trial.user_attrs[key]))
    for spec in study_info(study).get("fixed_trials", []):
        ((key, value),) = spec["attrs"].items()
        if (key, value) in present:
            continue
        # A stronger profile plan runs once the plan before it held the budget. Until then
        # (or for good, when it did not) it is passed over without holding back the fixed
        # trials after it: nothing is stored, so each call looks again.
        if "after" in spec and not held_budget(trials, spec["after"]):
            continue
        # A milder plan below the first runs once the plan above it missed the budget.
        if "unless" in spec and not missed_budget(trials, spec["unless"]):
            continue
        # A plan between two of the climb runs once one held and the other did not.
        if "between" in spec and not (
            held_budget(trials, spec["between"][0]) and missed_budget(trials, spec["between"][1])
        ):
            continue
        params = spec["params"]
        if spec.get("combine"):
            params = combined_params(trials, params)
            if params is None:
                return False  # recipes still running, or too few within budget
        # A plan made outside the space (a profile plan) is stored with it and built as is.
        plan = {attrs.PLAN: spec["plan"]} if "plan" in spec else {}
        study.enqueue_trial(params, user_attrs={**spec["attrs"], **plan})
        return True
    return False


def combined_params(
    trials: list[optuna.trial.FrozenTrial], base: dict[str, Any]
) -> dict[str, Any] | None:
    """Every one-technique recipe that held the metric and made the model faster, together.

    Combinations are where compression wins most, and the recipes that paid off
    alone are the engineer's obvious first combination: it gives the sampler a
    strong multi-technique point early. A recipe that did not beat the float32
    baseline's latency (unstructured sparsity on a dense runtime) would only cost
    metric. None while a recipe is unfinished, or when fewer than two recipes
    qualify (then there is nothing to combine).

    Args:
        trials: the study's trials.
        base: the combined trial's own settings (e.g. fine-tuning epochs), laid over the
            recipes'.

    Returns:
        The recipes' parameters with ``base`` over them, or None as above.
    """
    recipes = [t for t in trials if t.user_attrs.get(attrs.RECIPE, COMBINED) != COMBINED]
    if any(not t.state.is_finished() for t in recipes):
        return None
    reference = next(
        (
            t.values[1]
            for t in trials
            if t.state == TrialState.COMPLETE and t.user_attrs.get(attrs.BASELINE) == "float32"
        ),
        float("inf"),
    )
    paid_off = [
        t
        for t in recipes
        if t.state == TrialState.COMPLETE
        and all(v <= 0.0 for v in t.constraints.values())
        and t.values[1] < reference
    ]
    if len({t.user_attrs[attrs.RECIPE] for t in paid_off}) < 2:
        return None
    params = dict(paid_off[0].params)
    for trial in paid_off:
        technique = trial.user_attrs[attrs.RECIPE]
        params.update({k: v for k, v in trial.params.items() if k.startswith(f"{technique}.")})
    params.update(base)
    return params


def held_budget(trials: list[optuna.trial.FrozenTrial], name: str) -> bool:
    """Whether a run of the profile plan ``name`` completed within the metric budget (a
    device limit does not count: a stronger plan may well meet it).

    Args:
        trials: the study's trials.
        name: the profile plan's name.

    Returns:
        True when one of its runs did.
    """
    return any(
        t.state == TrialState.COMPLETE and t.constraints.get(attrs.CONSTRAINT, float("inf")) <= 0.0
        for t in trials
        if t.user_attrs.get(attrs.PROFILE_PLAN) == name
    )


def missed_budget(trials: list[optuna.trial.FrozenTrial], name: str) -> bool:
    """Whether the profile plan ``name`` ran and did not hold the metric budget: its last
    run finished (over the budget, pruned or failed) and no run held it. A run a dead driver
    left behind is followed by its re-run, so the last one decides.

    Args:
        trials: the study's trials, in number order.
        name: the profile plan's name.

    Returns:
        True as above; False while it has not run or its last run is unfinished.
    """
    mine = [t for t in trials if t.user_attrs.get(attrs.PROFILE_PLAN) == name]
    return bool(mine) and mine[-1].state.is_finished() and not held_budget(trials, name)


def storage_url(folder: Path, storage: str | None) -> str:
    """The Optuna storage URL of a study.

    Args:
        folder: the study's results folder.
        storage: the URL given (None: the folder's study.db).

    Returns:
        ``storage``, or the sqlite URL of the folder's study.db.
    """
    return storage or f"sqlite:///{(folder / attrs.DB_FILE).resolve()}"


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The study's sampler, from the registry (devicefit/samplers.py).

    Args:
        name: a sampler's name.
        seed: its seed.

    Returns:
        The sampler.

    Raises:
        UsageError: no sampler has that name.
    """
    if name not in SAMPLERS:
        raise UsageError(
            f"--sampler: unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}"
        )
    return SAMPLERS[name](seed)


def objectives(
    metric: Metric, devices: list[str], extra: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The task metric, one latency per device name (the first one is the primary
    device that recipes are compared on), then each extra kind per device name.

    Args:
        metric: the task metric.
        devices: the device names, primary first.
        extra: further objective kinds (``DEVICE_OBJECTIVE_FIELDS`` keys).

    Returns:
        Each objective as {"name", "direction", "unit"}; a device's also with "device",
        "kind" and "field" (its measurement's).
    """
    objs: list[dict[str, Any]] = [
        {
            "name": metric.name,
            "direction": "maximize" if metric.higher_is_better else "minimize",
            "unit": metric.unit,
        }
    ]
    for device in devices:
        objs.append(
            {
                "name": f"latency_{device}",
                "direction": "minimize",
                "unit": "ms",
                "device": device,
                "kind": "latency",
                "field": "median_ms",
            }
        )
    for kind in extra:
        field, unit = DEVICE_OBJECTIVE_FIELDS[kind]
        for device in devices:
            objs.append(
                {
                    "name": f"{kind}_{device}",
                    "direction": "minimize",
                    "unit": unit,
                    "device": device,
                    "kind": kind,
                    "field": field,
                }
            )
    return objs


def create_study(
    config: StudyConfig,
    folder: Path,
    metric: Metric,
    max_drop: float,
    label: str,
    recipes: list[dict[str, Any]] | None = None,
    combined: dict[str, Any] | None = None,
) -> optuna.Study:
    """Create the results folder and the study; on any failure leave nothing behind.

    Args:
        config, folder, label: the study's settings; its results folder; the task's label.
        metric, max_drop: the task metric; the metric-drop budget, in its unit.
        recipes: the one-technique recipes ({"technique", "params"}).
        combined: the settings (e.g. fine-tuning epochs) of the trial that combines the
            feasible recipes; None for no such trial.

    Raises:
        UsageError: a study of that name exists there, or a bad storage or sampler."""
    if (folder / attrs.STUDY_FILE).exists():
        raise UsageError(
            f"--study: {folder} already holds a study; continue it with: devicefit resume {folder}"
        )
    created_folder = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        objs = objectives(metric, list(device_pools(config.devices)), config.objectives)
        study = optuna.create_study(
            study_name=folder.name,
            storage=open_storage(storage_url(folder, config.storage)),
            directions=[o["direction"] for o in objs],
            sampler=make_sampler(config.sampler, config.seed),
        )
        # Named objectives: Optuna's dashboard and plots label the axes with them.
        study.set_metric_names([o["name"] for o in objs])
        study.set_user_attr(attrs.STUDY_KEY, _study_attrs(config, metric, objs, max_drop, label))
        # The fixed trials are enqueued one at a time by the driver, just before it asks
        # (see enqueue_next_fixed), so re-runs of interrupted trials always go first.
        set_study_info(study, fixed_trials=fixed_trials(recipes or [], combined))
        write_study_file(folder, folder.name, config.storage, stored_config(config))
    except optuna.exceptions.DuplicatedStudyError:
        _cleanup(folder, created_folder)
        raise UsageError(
            f"--study: a study named {folder.name!r} already exists in {config.storage}"
        ) from None
    except BaseException:
        _cleanup(folder, created_folder)
        raise
    return study


def _study_attrs(
    config: StudyConfig,
    metric: Metric,
    objs: list[dict[str, Any]],
    max_drop: float,
    label: str,
) -> dict[str, Any]:
    """The study's devicefit attributes as it is created (search/attrs.py)."""
    return {
        "task": label,
        "metric": {
            "name": metric.name,
            "higher_is_better": metric.higher_is_better,
            "unit": metric.unit,
        },
        "objectives": objs,
        "max_metric_drop": max_drop,
        "reference_metric": None,
        "version": __version__,
        # So another machine can resume it by name (devicefit resume --study).
        "config": stored_config(config),
    }


def fixed_trials(
    recipes: list[dict[str, Any]], combined: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The trials every study runs besides the sampler's, in order.

    Args:
        recipes: the one-technique recipes ({"technique", "params"}).
        combined: the settings of the trial combining the feasible recipes (None: none).

    Returns:
        The baselines, the recipes, then the combined trial when there are two recipes
        or more: each {"attrs", "params"} (and "combine" for the combined one).
    """
    fixed: list[dict[str, Any]] = [
        {"attrs": {attrs.BASELINE: m}, "params": {}} for m in BASELINE_MODES
    ]
    fixed += [{"attrs": {attrs.RECIPE: r["technique"]}, "params": r["params"]} for r in recipes]
    if len(recipes) >= 2 and combined is not None:
        fixed.append({"attrs": {attrs.RECIPE: COMBINED}, "params": combined, "combine": True})
    return fixed


def _cleanup(folder: Path, created: bool) -> None:
    if created:
        shutil.rmtree(folder, ignore_errors=True)


def write_study_file(folder: Path, name: str, storage: str | None, config: dict[str, Any]) -> None:
    """Write the results folder's study.json (search/attrs.py), whole or not at all.

    Args:
        folder: the results folder.
        name: the study's name in its storage.
        storage: its storage URL (None: the folder's study.db).
        config: its stored config (config.stored_config).
    """
    created = datetime.now(UTC).isoformat(timespec="seconds")
    write_json_atomic(
        folder / attrs.STUDY_FILE,
        {"study_name": name, "storage": storage, "config": config, "created": created},
    )


def read_study_file(folder: Path) -> dict[str, Any]:
    """The results folder's study.json (search/attrs.py).

    Args:
        folder: the study's results folder.

    Returns:
        Its contents: "study_name", "storage", "config" and "created".

    Raises:
        UsageError: the folder has no study file, or it is not valid JSON.
    """
    path = folder / attrs.STUDY_FILE
    if not path.is_file():
        raise UsageError(f"{folder}: not a devicefit results folder (no {attrs.STUDY_FILE})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: corrupt study file: {exc}") from None


def locate_study_folder(name: str, storage: str, results: str | None) -> Path:
    """The results folder of study ``name`` in ``storage``: ``results/name``. A machine
    that has not seen the study before gets its study.json written there (the
    folder is shared with the machine that created the study, for the artifacts).

    Args:
        name: the study's name in its storage.
        storage: its storage URL.
        results: the folder of results folders (None: the study's stored setting).

    Returns:
        The study's results folder.

    Raises:
        UsageError: no such study in the storage, or one devicefit did not make.
    """
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(storage))
    except KeyError:
        raise UsageError(f"--study: no study {name!r} in {storage}") from None
    meta = study.user_attrs.get(attrs.STUDY_KEY) or {}
    if "config" not in meta:
        raise UsageError(f"--study: {name!r} in {storage} is not a devicefit study")
    config = config_from_stored(meta["config"], f"study {name!r}")
    folder = Path(results or config.results) / name
    if not (folder / attrs.STUDY_FILE).exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_study_file(folder, name, storage, meta["config"])
    return folder


def open_study(folder: Path, storage: str | None, config: StudyConfig) -> optuna.Study:
    """Load the study in ``folder``, its sampler seeded past the draws already made.

    Args:
        folder: the study's results folder.
        storage: the storage URL given (None: ``$DEVICEFIT_STORAGE``, else the config's,
            else the folder's study.db).
        config: the study's settings (storage, sampler, seed).

    Returns:
        The Optuna study.

    Raises:
        UsageError: no study file, no such study in the storage, or an unknown sampler.
    """
    url = storage_url(folder, given_storage(storage) or config.storage)
    name = read_study_file(folder)["study_name"]
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError as exc:
        raise UsageError(f"{folder}: study not found in storage {url}: {exc}") from None
    # A sampler re-seeded with the study's seed would replay the random draws of the
    # first run and propose the same plans again; offsetting by the number of trials
    # already made keeps the resumed study reproducible without repeating itself.
    offset = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(config.sampler, config.seed + offset)
    return study


def recover_interrupted(study: optuna.Study, reason: str) -> list[int]:
    """Fail trials a dead driver left RUNNING and enqueue each one's re-run with the
    same plan. Idempotent: a trial already re-enqueued is not enqueued twice, so a
    driver killed during recovery itself cannot duplicate plans.

    Args:
        study: the study.
        reason: the failure reason recorded on each trial failed.

    Returns:
        The numbers of the trials failed.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(attrs.RETRY_OF) for t in trials}
    storage = study._storage  # noqa: SLF001 - the storage API is public, the attribute is not
    recovered = []
    for trial in trials:
        if trial.state != TrialState.RUNNING:
            continue
        if trial.number not in retried:
            user_attrs = {attrs.RETRY_OF: trial.number}
            # A profile plan is not sampled: its re-run needs the plan itself.
            profile = attrs.PROFILE_PLAN in trial.user_attrs
            for key in (*FIXED_KEYS, attrs.PLAN) if profile else FIXED_KEYS:
                if key in trial.user_attrs:
                    user_attrs[key] = trial.user_attrs[key]
            study.enqueue_trial(dict(trial.params), user_attrs=user_attrs)
        trial_id = trial._trial_id  # noqa: SLF001 - the storage API takes Optuna's own id
        storage.set_trial_user_attr(trial_id, attrs.FAIL_REASON, reason)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        recovered.append(trial.number)
    return recovered


def study_info(study: optuna.Study) -> dict[str, Any]:
    """The study's devicefit attributes (search/attrs.py).

    Args:
        study: a devicefit study.

    Returns:
        A new dict of them; changes are stored with ``set_study_info``.
    """
    return dict(study.user_attrs[attrs.STUDY_KEY])


def set_study_info(study: optuna.Study, **changes: Any) -> None:
    """Store ``changes`` over the study's devicefit attributes.

    Args:
        study: a devicefit study.
        **changes: attribute name -> new value (search/attrs.py).
    """
    study.set_user_attr(attrs.STUDY_KEY, {**study_info(study), **changes})


def ensure_reference_trial(study: optuna.Study) -> None:
    """Queue the float32 baseline again when it failed (or never ran).

    Args:
        study: a study whose reference metric is not known yet.
    """
    pending = (TrialState.WAITING, TrialState.RUNNING)
    for trial in study.get_trials(deepcopy=False, states=pending):
        if trial.user_attrs.get(attrs.BASELINE) == "float32":
            return
    study.enqueue_trial({}, user_attrs={attrs.BASELINE: "float32"})


def reference_latency(study: optuna.Study) -> float | None:
    """The float32 baseline's latency on the first device, once it is complete.

    Args:
        study: the study.

    Returns:
        Its first latency objective's value, or None before it completes.
    """
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get(attrs.BASELINE) == "float32":
            return float(trial.values[1])
    return None

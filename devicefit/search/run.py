"""Entry points behind `devicefit search` and `devicefit resume`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from devicefit.config import StudyConfig, config_from_stored
from devicefit.errors import UsageError
from devicefit.evaluators.devices import build_pools
from devicefit.evaluators.pool import DevicePool
from devicefit.results.records import StudyRecord
from devicefit.search import attrs
from devicefit.search.driver import Driver
from devicefit.search.executors import Executor, make_executor
from devicefit.search.study import (
    create_study,
    open_study,
    read_study_file,
    recover_interrupted,
    set_study_info,
)
from devicefit.spaces import all_techniques, get_technique
from devicefit.spaces.space import SearchSpace
from devicefit.tasks.base import Task, TaskSpec


def task_spec(config: StudyConfig) -> TaskSpec:
    """The task as workers load it, from the study's settings.

    Args:
        config: the study's settings.

    Returns:
        A TaskSpec naming the task, model, data, metric, fine-tuning samples, image size and
        output.
    """
    return TaskSpec(
        config.task,
        config.model,
        config.data,
        config.metric,
        config.finetune_samples,
        config.image_size,
        config.output,
    )


def build_space(config: StudyConfig, model: Any = None) -> SearchSpace:
    """The study's search space; ``model`` is needed for per-block or per-layer settings,
    whose units (blocks, layers, channel groups) come from the model's graph.

    Args:
        config: the study's settings (techniques, ranges, granularity).
        model: the task's Keras model (None: no units, and no technique left out for having
            nothing to act on).

    Returns:
        The SearchSpace.
    """
    if config.techniques is None:
        techniques = all_techniques()
        if model is not None:  # every technique: only those with something to act on
            ranged = config.ranges or {}
            techniques = [t for t in techniques if t.name in ranged or t.acts_on(model)]
    else:
        techniques = [get_technique(name) for name in config.techniques]
    granularity = {t.name: config.granularity_of(t.name) for t in techniques}
    units = {}
    if model is not None and any(level != "global" for level in granularity.values()):
        from devicefit.spaces.blocks import find_blocks
        from devicefit.spaces.graph import graph_view

        blocks = find_blocks(graph_view(model))
        units = {t.name: t.units(model, granularity[t.name], blocks) for t in techniques}
    return SearchSpace(techniques, config.ranges, granularity, units)


@dataclass
class Prepared:
    """A study's inputs, checked: the task as workers load it, the task itself (loaded
    here), its search space and its devices (name -> pool, in objective order)."""

    spec: TaskSpec
    task: Task
    space: SearchSpace
    devices: dict[str, DevicePool]


def _prepare(config: StudyConfig) -> Prepared:
    """Check every input before anything is written: a bad one raises UsageError."""
    import optuna

    from devicefit.tasks import forget_task, load_task
    from devicefit.tasks.data_loader import is_data_loader, written_by_this_process

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    build_space(config)  # the ranges and names, before the (slow) task loads
    devices = build_pools(config.devices)
    spec = task_spec(config)
    loader = bool(spec.data_path and is_data_loader(spec.data_path))
    if loader:
        forget_task(spec)  # what the loader reads may have changed since: read it anew
    task = load_task(spec)  # trains a built-in task's model on first use
    if loader:  # workers read the files this read wrote, never the loader
        spec = replace(spec, data_path=str(written_by_this_process(str(spec.data_path))))
    return Prepared(spec, task, build_space(config, task.model), devices)


def describe_devices(config: StudyConfig, devices: dict[str, DevicePool]) -> dict[str, Any]:
    """Each device's description; a UsageError if a device cannot give what the study
    asks of it (energy or temperature objectives and limits need its sensors).

    Args:
        config: the study's settings (objectives and limits).
        devices: device name -> pool.

    Returns:
        Device name -> its description (a pool's, with its members).

    Raises:
        UsageError: a reachable member cannot measure what an objective or limit needs.
    """
    from devicefit.errors import UsageError

    described = {name: pool.describe() for name, pool in devices.items()}
    needs = set(config.objectives)
    needs |= {"energy"} if config.max_energy_mj is not None else set()
    needs |= {"temperature"} if config.max_temperature_c is not None else set()
    needs.discard("peak_memory")  # every device reports its peak memory
    for name, info in described.items():
        for member in info.get("members", [info]):
            if "unavailable" in member:
                continue  # an agent down at start: its pool may still serve
            sensors = member.get("sensors") or {}
            for sensor in sorted(needs):
                if sensors.get(sensor, "not reported") is not None:
                    why = sensors.get(sensor, "the device does not report it")
                    raise UsageError(
                        f"--device {name}: {member.get('name')} cannot measure {sensor}: {why}"
                    )
    return described


def start_search(config: StudyConfig, console: Console) -> int:
    """Create a study from ``config`` and run it to its trials; the report at the end.

    Args:
        config: the study's settings.
        console: where progress and the report are printed.

    Returns:
        The driver's exit code (0 done, 1 stopped, 130 interrupted).

    Raises:
        UsageError: an input is bad; nothing is written then.
    """
    prepared = _prepare(config)
    spec, space, devices, task = prepared.spec, prepared.space, prepared.devices, prepared.task
    metric = task.metric
    name = config.study or f"{spec.label()}-{datetime.now():%Y%m%d-%H%M%S}"
    folder = Path(config.results) / name
    max_drop = (
        config.max_metric_drop if config.max_metric_drop is not None else metric.default_max_drop
    )
    if max_drop is None:
        raise UsageError(
            f"--metric {config.metric}: the function has no max_drop attribute; give it one "
            "or set --max-metric-drop (the budget, in the metric's own unit)"
        )
    recipes = space.recipe_params()  # each technique's own recipe setting
    described = describe_devices(config, devices)  # before anything is written
    study = create_study(
        config, folder, metric, max_drop, spec.label(), recipes, space.combined_settings()
    )
    set_study_info(
        study,
        devices=described,
        task_info=dict(task.info),
    )
    console.print(f"study [bold]{name}[/] in {folder}  (resume: devicefit resume {folder})")
    if note := task.info.get("note"):
        console.print(note, style="yellow", markup=False)
    _write_inspection(folder, task, space, console)
    from devicefit.search.device_profiles import write_device_profiles

    write_device_profiles(folder, task, devices, config.threads, console)
    return _drive(study, config, folder, prepared, console)


def _write_sensitivity(
    study: optuna.Study,
    folder: Path,
    task: Task,
    space: SearchSpace,
    config: StudyConfig,
    console: Console,
    executor: Executor,
    spec: TaskSpec,
    devices: dict[str, DevicePool],
) -> None:
    """The sensitivity profile, or the rest of it when a resumed study stopped while
    making it (on the study's workers), with the time its settings save, predicted and
    checked on the devices, the greedy plans made from them (search/greedy_plan.py) and
    the search space they shape (search/shaped_space.py), and what the whole-model int8
    file loses (search/conversion_drops.py: a plan converts to it only when that fits);
    nothing for a model without validation data or when off."""
    if not config.sensitivity or getattr(task, "data", None) is None:
        return
    from devicefit.search.sensitivity_profiles import profile_granularity, write_sensitivity
    from devicefit.search.sensitivity_savings import add_savings

    granularity = profile_granularity(config.granularity)
    # The techniques the study was asked to search (quantization is in every space, as the
    # converter, but is profiled only when it was asked for).
    asked = [
        t for t in space.techniques if config.techniques is None or t.name in config.techniques
    ]
    profile = write_sensitivity(folder, task, asked, granularity, console, executor, spec)
    from devicefit.search.conversion_drops import add_conversion_drops
    from devicefit.search.greedy_plan import add_profile_plans, whole_file_modes

    add_conversion_drops(folder, profile, task, whole_file_modes(space), console)
    add_savings(folder, profile, task, devices, config.threads, console)
    from devicefit.search.step_savings import add_step_savings

    add_step_savings(study, folder, profile, task, devices, space, config.threads, console)
    add_profile_plans(study, folder, space, console)
    from devicefit.search.shaped_space import add_space_shaping

    add_space_shaping(study, folder, space, console)


def _write_inspection(folder: Path, task: Task, space: SearchSpace, console: Console) -> None:
    """What the search can touch in the model, layer by layer (as `devicefit inspect`),
    saved beside the study so a surprising front can be traced to a frozen group."""
    import dataclasses

    from devicefit.search.artifacts import write_json_atomic
    from devicefit.spaces.inspection import inspect_model

    reports = inspect_model(task.model, task.input_shape, space.techniques)
    write_json_atomic(folder / attrs.INSPECT_FILE, [dataclasses.asdict(r) for r in reports])
    untouched = [r.name for r in reports if not r.applies]
    console.print(
        f"{len(reports)} layers; {len(untouched)} no technique can touch"
        + (
            f" ({', '.join(untouched[:5])}{'...' if len(untouched) > 5 else ''})"
            if untouched
            else ""
        )
        + f"; details in {attrs.INSPECT_FILE}"
    )


def _confirmed(
    study: optuna.Study,
    record: StudyRecord,
    config: StudyConfig,
    devices: dict[str, DevicePool],
    console: Console,
) -> StudyRecord:
    """The record after the report's claims were measured in paired rounds; as it was if a
    device could not (the report then says its speed-ups are unconfirmed)."""
    from devicefit.errors import DeviceUnavailable, TrialFailed
    from devicefit.results.records import study_record
    from devicefit.search.confirm import confirm_study

    try:
        confirm_study(study, record, devices, config.threads, console, config.confirm_rounds)
    except (DeviceUnavailable, TrialFailed, OSError) as exc:
        console.print(f"speed-ups not confirmed: {exc}", style="yellow", markup=False)
        return record
    return study_record(study, record.folder, record.storage)


def resume_search(
    folder: Path,
    console: Console,
    storage: str | None = None,
    trials: int | None = None,
    workers: int | None = None,
    ray: str | None = None,
    cpus_per_trial: int | None = None,
) -> int:
    """Continue the study in ``folder`` with its stored settings, re-running trials a
    stopped driver left unfinished; the report at the end.

    Args:
        folder: the study's results folder.
        console: where progress and the report are printed.
        storage: the storage URL (None: the study's own).
        trials, workers: the complete trials to reach; the workers (None: as stored).
        ray, cpus_per_trial: a Ray cluster's address and CPUs per trial (None: as stored).

    Returns:
        The driver's exit code (0 done, 1 stopped, 130 interrupted).

    Raises:
        UsageError: the folder, its study or an input is bad.
    """
    stored = read_study_file(folder)
    config = config_from_stored(stored["config"], f"{folder}/{attrs.STUDY_FILE}")
    config = config.replace(
        trials=trials, workers=workers, storage=storage, ray=ray, cpus_per_trial=cpus_per_trial
    )
    prepared = _prepare(config)
    study = open_study(folder, storage, config)
    _warn_if_data_changed(study, prepared.task.info, console)
    recovered = recover_interrupted(study, "the driver stopped while this trial ran; re-run")
    if recovered:
        console.print(f"re-running trial(s) {recovered} left unfinished by a stopped driver")
    return _drive(study, config, folder, prepared, console)


def _warn_if_data_changed(study: optuna.Study, info: dict[str, Any], console: Console) -> None:
    """A data loader that gives other data than when the study started: trials scored
    before and after the resume are not comparable, which a user must hear."""
    from devicefit.search.study import study_info

    before = study_info(study).get("task_info", {}).get("data_digest")
    now = info.get("data_digest")
    if before and now and before != now:
        console.print(
            f"--data {info.get('data_path')}: the loader now gives other data than when this "
            "study started; trials before and after this resume are scored on different splits",
            style="yellow",
            markup=False,
        )


def _drive(
    study: optuna.Study, config: StudyConfig, folder: Path, prepared: Prepared, console: Console
) -> int:
    spec, space, devices, task = prepared.spec, prepared.space, prepared.devices, prepared.task
    log = str((folder / "worker.log").resolve())
    if config.ray:
        from devicefit.search.ray_executor import RayExecutor

        executor: Executor = RayExecutor(
            config.ray, config.workers, spec, config.cpus_per_trial or 1, config.recycle_after
        )
    else:
        executor = make_executor(config.workers, log, config.recycle_after, config.cpus_per_trial)
    try:  # the profile (or its rest, for a study stopped while making it) on the workers
        _write_sensitivity(study, folder, task, space, config, console, executor, spec, devices)
    except BaseException:  # Ctrl-C or a worker lost: no worker outlives the driver
        executor.shutdown(cancel=True)
        raise
    driver = Driver(
        study, config, folder, space, task.metric, spec, executor, dict(devices), console
    )
    code = driver.run()
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if complete:
        from devicefit.results import load_study_record, print_report, write_report

        record = load_study_record(folder, config.storage)
        if code == 0 and config.confirm_rounds:
            record = _confirmed(study, record, config, devices, console)
        print_report(record, console)
        paths = write_report(record, folder)
        if config.keep_keras == "front":
            from devicefit.results.export import prune_keras_models

            prune_keras_models(record)
        console.print(f"{complete} complete trials; report: {paths['html']}")
    return code

"""Entry points behind `devicefit search` and `devicefit resume`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from optuna.trial import TrialState
from rich.console import Console

from devicefit.config import StudyConfig
from devicefit.evaluators.local import get_evaluator
from devicefit.search import attrs
from devicefit.search.driver import Driver
from devicefit.search.executors import make_executor
from devicefit.search.study import (
    create_study,
    open_study,
    read_study_file,
    recover_interrupted,
    set_study_info,
)
from devicefit.spaces import all_techniques, get_technique
from devicefit.spaces.space import RECIPE_SETTINGS, SearchSpace
from devicefit.tasks.base import TaskSpec


def task_spec(config: StudyConfig) -> TaskSpec:
    return TaskSpec(config.task, config.model, config.data, config.metric)


def build_space(config: StudyConfig) -> SearchSpace:
    if config.techniques is None:
        techniques = all_techniques()
    else:
        techniques = [get_technique(name) for name in config.techniques]
    return SearchSpace(techniques, config.ranges)


def _prepare(config: StudyConfig) -> tuple[TaskSpec, SearchSpace, object, object]:
    """Check every input before anything is written: a bad one raises UsageError."""
    import optuna

    from devicefit.tasks import load_task

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = build_space(config)
    evaluator = get_evaluator(config.device)
    spec = task_spec(config)
    task = load_task(spec)  # trains a built-in task's model on first use
    return spec, space, evaluator, task


def start_search(config: StudyConfig, console: Console) -> int:
    spec, space, evaluator, task = _prepare(config)
    metric = task.metric  # type: ignore[attr-defined]
    name = config.study or f"{spec.label()}-{datetime.now():%Y%m%d-%H%M%S}"
    folder = Path(config.results) / name
    max_drop = (
        config.max_metric_drop if config.max_metric_drop is not None else metric.default_max_drop
    )
    recipes = space.recipe_params(RECIPE_SETTINGS)
    study = create_study(
        config, folder, metric, max_drop, spec.label(), recipes, space.combined_settings()
    )
    set_study_info(
        study,
        devices={config.device: evaluator.describe()},  # type: ignore[attr-defined]
        task_info=dict(task.info),  # type: ignore[attr-defined]
    )
    console.print(f"study [bold]{name}[/] in {folder}  (resume: devicefit resume {folder})")
    return _drive(study, config, folder, space, metric, spec, evaluator, console)


def resume_search(
    folder: Path,
    console: Console,
    storage: str | None = None,
    trials: int | None = None,
    workers: int | None = None,
) -> int:
    stored = read_study_file(folder)
    config = StudyConfig.from_dict(stored["config"], f"{folder}/{attrs.STUDY_FILE}")
    config = config.replace(trials=trials, workers=workers, storage=storage)
    spec, space, evaluator, task = _prepare(config)
    study = open_study(folder, storage, config)
    recovered = recover_interrupted(study, "the driver stopped while this trial ran; re-run")
    if recovered:
        console.print(f"re-running trial(s) {recovered} left unfinished by a stopped driver")
    return _drive(study, config, folder, space, task.metric, spec, evaluator, console)  # type: ignore[attr-defined]


def _drive(study, config, folder, space, metric, spec, evaluator, console) -> int:  # noqa: ANN001
    log = str((folder / "worker.log").resolve())
    executor = make_executor(config.workers, log)
    driver = Driver(study, config, folder, space, metric, spec, executor, evaluator, console)
    code = driver.run()
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if complete:
        from devicefit.results import load_study_record, print_report, write_report

        record = load_study_record(folder, config.storage)
        print_report(record, console)
        paths = write_report(record, folder)
        console.print(f"{complete} complete trials; report: {paths['html']}")
    return code

"""The live report: when it is rewritten, and that it can never stop a search.

The driver's LiveReporter is exercised alone, on a real SQLite study; the real search
that rewrites its report while a browser watches is tests/results/test_report_in_browser.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from rich.console import Console

from devicefit.config import StudyConfig
from devicefit.search import attrs
from devicefit.search.live_report import REPORT_EVERY, LiveReporter


@dataclass
class Live:
    """A LiveReporter and the count of trials told, as the driver keeps them."""

    reporter: LiveReporter
    folder: Path
    console: Console
    told: int = 0


def _study(folder: Path) -> optuna.Study:
    folder.mkdir(parents=True)
    study = optuna.create_study(
        study_name="live",
        storage=f"sqlite:///{folder / attrs.DB_FILE}",
        directions=["maximize", "minimize"],
    )
    study.set_user_attr(
        attrs.STUDY_KEY,
        {
            "metric": {"name": "accuracy", "higher_is_better": True, "unit": "%"},
            "objectives": [
                {"name": "accuracy", "direction": "maximize", "unit": "%"},
                {"name": "latency_local", "direction": "minimize", "unit": "ms", "device": "local"},
            ],
            "max_metric_drop": 1.0,
            "reference_metric": 97.0,
        },
    )
    (folder / attrs.STUDY_FILE).write_text(json.dumps({"study_name": "live", "storage": None}))
    return study


def _driver(study: optuna.Study, folder: Path, console: Console) -> Live:
    # The report needs the study, its folder, the keep_keras setting and a console.
    reporter = LiveReporter(study, folder, StudyConfig().keep_keras, console)
    return Live(reporter, folder, console)


def _tell(driver: Live, study: optuna.Study, n: int, latency: float = 2.0) -> None:
    for _ in range(n):
        trial = optuna.trial.create_trial(
            values=[96.5, latency], constraints={attrs.CONSTRAINT: -0.5}
        )
        study.add_trial(trial)
        number = study.get_trials(deepcopy=False)[-1].number
        keras_file = driver.folder / attrs.TRIALS_DIR / str(number) / "model.keras"
        keras_file.parent.mkdir(parents=True)
        keras_file.write_bytes(b"keras")
        driver.told += 1


def _started(tmp_path: Path) -> tuple[Live, optuna.Study, Path]:
    """A driver whose first trial completed and whose first live report is written."""
    folder = tmp_path / "live"
    study = _study(folder)
    driver = _driver(study, folder, Console(record=True))
    _tell(driver, study, 1)
    _report_now(driver)
    return driver, study, folder


def _report_now(driver: Live) -> None:
    driver.reporter.update(driver.told)
    driver.reporter.finish()


def _trials_in_report(folder: Path) -> int:
    driver_report = folder / "report.html"
    return driver_report.read_text().count("<tr data-status=") if driver_report.exists() else 0


def test_rewritten_every_few_trials_in_the_background(tmp_path: Path) -> None:
    driver, study, folder = _started(tmp_path)
    html = (folder / "report.html").read_text()
    assert _trials_in_report(folder) == 1 and 'http-equiv="refresh"' in html

    _tell(driver, study, REPORT_EVERY - 1)
    _report_now(driver)  # too soon: fewer than REPORT_EVERY new trials
    assert _trials_in_report(folder) == 1

    _tell(driver, study, 1)
    driver.reporter.cost = 0.0  # the throttle by writing time is tested below
    _report_now(driver)
    assert _trials_in_report(folder) == 1 + REPORT_EVERY


def test_slow_reports_are_written_less_often(tmp_path: Path) -> None:
    driver, study, folder = _started(tmp_path)
    # As if that write had taken 60 s: the next may come only 10 minutes later.
    driver.reporter.cost, driver.reporter.written_at = 60.0, time.monotonic()
    _tell(driver, study, 2 * REPORT_EVERY)
    _report_now(driver)
    assert _trials_in_report(folder) == 1


def test_a_failing_report_never_stops_the_search(tmp_path: Path) -> None:
    # The error message will name this folder: "[/bold]" in it is not rich markup.
    folder = tmp_path / "a[" / "bold]"
    study = _study(folder)
    console = Console(record=True, width=300)
    driver = _driver(study, folder, console)
    (folder / "report.html").mkdir()  # the page cannot be written: a folder is in the way
    _tell(driver, study, 1)
    _report_now(driver)
    text = console.export_text()
    assert "live report not written: IsADirectoryError" in text and "a[/bold]" in text
    # The study itself broken (no devicefit attributes): a warning, nothing raised.
    study.set_user_attr(attrs.STUDY_KEY, "broken")
    _tell(driver, study, REPORT_EVERY)
    driver.reporter.cost = 0.0
    _report_now(driver)
    assert "live report not written: UsageError" in console.export_text()


def test_keras_models_of_dominated_trials_are_dropped(tmp_path: Path) -> None:
    driver, study, folder = _started(tmp_path)  # trial 0: 96.5 %, 2.0 ms
    _tell(driver, study, 1, latency=1.0)  # dominates trial 0
    _tell(driver, study, REPORT_EVERY - 1, latency=3.0)  # dominated
    driver.reporter.cost = 0.0
    _report_now(driver)
    kept = sorted(p.parent.name for p in (folder / attrs.TRIALS_DIR).glob("*/model.keras"))
    assert kept == ["1"]
    assert "live report not written" not in driver.console.export_text()

"""The live report: report.html rewritten while a search runs, so it can be watched.

A report that cannot be written never stops the search. The page is rendered in a
background thread (a large study's takes seconds), at most once per ten times its last
rendering time, and never two at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from rich.console import Console

if TYPE_CHECKING:
    from devicefit.results.records import StudyRecord

REPORT_EVERY = 3  # completed trials between rewrites of the live report.html


@dataclass
class LiveReporter:
    """Rewrites ``folder``/report.html from ``study`` every few told trials.

    ``keep_keras`` is the study's setting: "front" drops the Keras models of trials
    off the Pareto front each time the report is written.
    """

    study: optuna.Study
    folder: Path
    keep_keras: str
    console: Console
    reported: int = 0  # trials told when the report was last written
    written_at: float = 0.0  # when it was written (monotonic)
    cost: float = 0.0  # how long writing it took
    _thread: threading.Thread | None = None  # writing it now

    def update(self, told: int) -> None:
        """Start rewriting the report if it is due.

        Args:
            told: the trials the driver has told so far (complete or pruned).
        """
        if told == self.reported:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        if self.reported and (
            told - self.reported < REPORT_EVERY
            or time.monotonic() - self.written_at < 10 * self.cost
        ):
            return
        self.reported = told
        from devicefit.results.records import study_record

        try:
            # The driver's own study: no second connection to the storage.
            record = study_record(self.study, self.folder)
        except Exception as exc:  # noqa: BLE001 - the report is a view; the study goes on
            self._failed(exc)
            return
        self._thread = threading.Thread(
            target=self._write, args=(record,), name="live-report", daemon=True
        )
        self._thread.start()

    def finish(self) -> None:
        """Let a report being written finish, so it never overwrites the final one."""
        if self._thread is not None:
            self._thread.join(timeout=300)

    def _write(self, record: StudyRecord) -> None:
        from devicefit.results.export import prune_keras_models
        from devicefit.results.report import write_report

        clock = time.monotonic()
        try:
            write_report(record, self.folder, live=True)
            if self.keep_keras == "front":
                prune_keras_models(record)
        except Exception as exc:  # noqa: BLE001 - the report is a view; the study goes on
            self._failed(exc)
        self.written_at = time.monotonic()
        self.cost = self.written_at - clock

    def _failed(self, exc: Exception) -> None:
        # markup=False: an exception's text may hold "[...]", which rich would parse.
        self.console.print(
            f"live report not written: {type(exc).__name__}: {exc}", style="yellow", markup=False
        )

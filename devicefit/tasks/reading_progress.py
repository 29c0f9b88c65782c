"""A progress bar while a ``--data`` loader's dataset is read to disk: a large dataset
takes minutes, and the study has not started yet."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def transient_bar(console: Console) -> Progress:
    """A bar with count, elapsed time and ETA that disappears when done, drawn only when
    ``console`` is a terminal (a log file gets no bar frames).

    Args:
        console: where the bar is drawn (stderr's console, in practice).

    Returns:
        A progress display with no task yet, not started: the caller adds its task and
        starts and stops it.
    """
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


class ReadingProgress:
    """One bar over a dataset's elements (its length when tf.data knows it, else a count),
    on stderr, drawn only when stderr is a terminal."""

    def __init__(self, split: str, dataset: Any, console: Console | None = None) -> None:
        known = int(dataset.cardinality())
        self.total = known if known >= 0 else None  # INFINITE/UNKNOWN are negative
        self.split = split
        self.rows = 0
        self.console = console or Console(stderr=True)
        self.progress = transient_bar(self.console)
        self.bar = self.progress.add_task(self._describe(), total=self.total)

    def __enter__(self) -> ReadingProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def advance(self, rows: int) -> None:
        """One element read, holding ``rows`` samples.

        Args:
            rows: the samples in the element (1 for an unbatched one), added to the count
                the bar shows.
        """
        self.rows += rows
        self.progress.update(self.bar, advance=1, description=self._describe())

    def _describe(self) -> str:
        return f"reading --data {self.split}: {self.rows} samples"

"""The live view of a search: a rich progress bar with ETA and one line per trial."""

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

from devicefit.spaces.base import Plan


class SearchProgress:
    def __init__(self, console: Console, total: int, done: int, info: dict[str, Any]) -> None:
        self.console = console
        self.info = info
        self.unit = info["metric"]["unit"]
        self.max_drop = float(info["max_metric_drop"])
        self.reference_latency: float | None = None
        self.best: str = "best: -"
        self.best_latency = float("inf")
        self.progress = Progress(
            TextColumn("[bold]search"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task_id = self.progress.add_task("trials", total=total, completed=done, best=self.best)

    def __enter__(self) -> SearchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def trial_done(
        self, number: int, plan: Plan, metric: float, drop: float, latency: float
    ) -> None:
        """Print a told trial's line and advance the bar; the best feasible latency so far
        (and its speed-up over the float32 baseline) is shown beside it.

        Args:
            number: the trial's number.
            plan: its plan; the float32 baseline's latency becomes the reference when none
                is known.
            metric: its test metric, in the metric's unit.
            drop: its metric drop (>0 is worse); a trial over the budget is marked.
            latency: its latency in ms on the primary device.
        """
        if self.reference_latency is None and plan.short() == "quantization(mode=float32)":
            self.reference_latency = latency
        speed = f" ({self.reference_latency / latency:.2f}x)" if self.reference_latency else ""
        feasible = drop <= self.max_drop
        mark = "" if feasible else " [yellow](over the metric-drop budget)[/]"
        change = -drop if abs(drop) >= 5e-4 else 0.0  # no "-0.000"
        self.console.print(
            f"#{number:<3} {metric:8.3f}{self.unit} ({change:+.3f})  {latency:8.3f} ms{speed}  "
            f"{plan.short()}{mark}"
        )
        if feasible and latency < self.best_latency:
            self.best_latency = latency
            self.best = f"best: {latency:.3f} ms{speed}"
        self.progress.update(self.task_id, advance=1, best=self.best)

    def trial_pruned(self, number: int, plan: Plan, reason: str) -> None:
        """Print a pruned trial's line (the bar does not advance).

        Args:
            number: the trial's number.
            plan: its plan.
            reason: why it was pruned; its first 200 characters are shown.
        """
        self.console.print(f"#{number:<3} [yellow]pruned[/]: {reason[:200]}  ({plan.short()})")

    def trial_failed(self, number: int, plan: Plan, reason: str) -> None:
        """Print a failed trial's line (the bar does not advance).

        Args:
            number: the trial's number.
            plan: its plan.
            reason: why it failed; its first 200 characters are shown.
        """
        self.console.print(f"#{number:<3} [red]failed[/]: {reason[:200]}  ({plan.short()})")

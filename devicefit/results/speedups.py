"""Speed-ups from paired rounds (search/confirm.py measures them): the median of per-round
ratios with its 95% interval, and what a report may say about one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devicefit.deploy.intervals import median_interval
from devicefit.results.records import StudyRecord


@dataclass(frozen=True)
class SpeedUp:
    """How many times faster than a reference: the median of per-round ratios, its 95%
    interval, and how many rounds gave it."""

    median: float
    low: float
    high: float
    rounds: int

    @property
    def faster(self) -> bool:
        return self.low > 1.0

    @property
    def slower(self) -> bool:
        return self.high < 1.0

    def to_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "low": self.low, "high": self.high, "rounds": self.rounds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeedUp:
        return cls(
            float(data["median"]), float(data["low"]), float(data["high"]), int(data["rounds"])
        )

    def text(self) -> str:
        """'3.94× [3.90–3.98]'."""
        return f"{fmt_times(self.median)} [{self.low:.2f}–{self.high:.2f}]"


def paired_speedup(reference_ms: list[float], candidate_ms: list[float]) -> SpeedUp:
    """The candidate's speed-up over the reference from their block medians, round by round."""
    ratios = [r / c for r, c in zip(reference_ms, candidate_ms, strict=True) if c > 0]
    median, low, high = median_interval(ratios)
    return SpeedUp(median, low, high, len(ratios))


def confirmed(record: StudyRecord, number: int, device: str, against: str) -> SpeedUp | None:
    """The confirmed speed-up of trial ``number`` on ``device`` against the float32 baseline
    (``against="float32"``) or the best peer recipe (``"peer"``); None if not confirmed."""
    entry = (record.confirmed.get("devices") or {}).get(device) or {}
    data = (entry.get(f"vs_{against}") or {}).get(str(number))
    return SpeedUp.from_dict(data) if data else None


def fmt_times(value: float) -> str:
    """'3.94×', or '28.1×' from ten up."""
    return f"{value:.1f}×" if value >= 10 else f"{value:.2f}×"

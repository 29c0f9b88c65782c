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
        """Confidently faster: the whole interval is above 1."""
        return self.low > 1.0

    @property
    def slower(self) -> bool:
        """Confidently slower: the whole interval is below 1."""
        return self.high < 1.0

    def to_dict(self) -> dict[str, float | int]:
        """The speed-up as stored in the study's confirmation attributes and pareto.json.

        Returns:
            ``median``, ``low``, ``high`` and ``rounds``.
        """
        return {"median": self.median, "low": self.low, "high": self.high, "rounds": self.rounds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeedUp:
        """The speed-up stored by ``to_dict``.

        Args:
            data: a dict with ``median``, ``low``, ``high`` and ``rounds``.

        Returns:
            The speed-up.
        """
        return cls(
            float(data["median"]), float(data["low"]), float(data["high"]), int(data["rounds"])
        )

    def text(self) -> str:
        """'3.94× [3.90–3.98]'.

        Returns:
            The median and its 95% interval, for reports.
        """
        return f"{fmt_times(self.median)} [{self.low:.2f}–{self.high:.2f}]"


def paired_speedup(reference_ms: list[float], candidate_ms: list[float]) -> SpeedUp:
    """The candidate's speed-up over the reference from their block medians, round by round.

    Args:
        reference_ms: the reference's block median per round, in ms.
        candidate_ms: the candidate's, in the same rounds (rounds where it is 0 are skipped).

    Returns:
        The median of the per-round ratios (reference / candidate), its 95% interval and
        the rounds used.

    Raises:
        ValueError: the lists differ in length, or no round is usable.
    """
    ratios = [r / c for r, c in zip(reference_ms, candidate_ms, strict=True) if c > 0]
    median, low, high = median_interval(ratios)
    return SpeedUp(median, low, high, len(ratios))


def confirmed(record: StudyRecord, number: int, device: str, against: str) -> SpeedUp | None:
    """The confirmed speed-up of trial ``number`` on ``device`` against the float32 baseline
    (``against="float32"``) or the best peer recipe (``"peer"``); None if not confirmed.

    Args:
        record: the study, with its paired-round confirmations.
        number: the trial number.
        device: the device name.
        against: "float32" or "peer".

    Returns:
        The speed-up, or None.
    """
    entry = (record.confirmed.get("devices") or {}).get(device) or {}
    data = (entry.get(f"vs_{against}") or {}).get(str(number))
    return SpeedUp.from_dict(data) if data else None


def fmt_times(value: float) -> str:
    """'3.94×', or '28.1×' from ten up.

    Args:
        value: a speed-up factor.

    Returns:
        The factor with two decimals (one from ten up) and a times sign.
    """
    return f"{value:.1f}×" if value >= 10 else f"{value:.2f}×"

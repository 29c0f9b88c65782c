"""Trials that are one candidate: the same plan as an earlier trial, or a file whose bytes
hash to an earlier file's.

Such a trial is not built (same plan) or not scored (same file) again: it reuses the earlier
trial's file and scores, records "same as #n", and only its latency is measured afresh. The
fresh median joins the earlier ones of that file, and the trial is told their median, so a
repeat sharpens the estimate instead of adding a second, noisy point to the front.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from devicefit.search import attrs
from devicefit.search.trial import TrialOutput

# What a reusing trial copies from the trial that made its file (its own measurement aside).
SCORES = (
    "metric",
    "size_bytes",
    "macs",
    "params",
    "ops",
    "layer_macs",
    "tflite_sha256",
    "built_on",
)


def plan_key(plan: dict[str, Any]) -> str:
    """A plan as a key: two plans are the same candidate when their keys are equal.

    Args:
        plan: a plan as a dict.

    Returns:
        Its JSON with sorted keys.
    """
    return json.dumps(plan, sort_keys=True)


@dataclass
class KnownCandidates:
    files: dict[str, int] = field(default_factory=dict)  # sha256 -> first trial with it
    plans: dict[str, int] = field(default_factory=dict)  # plan_key -> first trial with it
    # sha256 -> device -> the median of every measurement of that file, in order
    medians: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    scores: dict[int, dict[str, Any]] = field(default_factory=dict)  # trial -> its SCORES

    @classmethod
    def from_trials(cls, trials: list[FrozenTrial]) -> KnownCandidates:
        """The candidates of the complete trials, indexed in trial order.

        Args:
            trials: the study's trials.

        Returns:
            A KnownCandidates of them.
        """
        known = cls()
        for trial in sorted(trials, key=lambda t: t.number):
            if trial.state == TrialState.COMPLETE:
                metrics = trial.user_attrs.get(attrs.METRICS) or {}
                known.add(trial.number, trial.user_attrs.get(attrs.PLAN), metrics)
        return known

    def add(self, number: int, plan: dict[str, Any] | None, metrics: dict[str, Any]) -> None:
        """Index a complete trial (its measurement dicts are under ``metrics["latency"]``).

        Args:
            number: the trial's number.
            plan: its plan as a dict (None: not indexed by plan).
            metrics: its stored metrics; a trial without ``tflite_sha256`` is skipped.
        """
        sha = metrics.get("tflite_sha256")
        if not sha:
            return  # a study from before files were hashed
        first = self.files.setdefault(sha, number)
        if first == number:
            self.scores[number] = {k: metrics.get(k) for k in SCORES}
        if plan is not None:
            self.plans.setdefault(plan_key(plan), first)
        for device, measured in (metrics.get("latency") or {}).items():
            median = (measured or {}).get("median_ms")
            if median is not None:
                self.medians.setdefault(sha, {}).setdefault(device, []).append(float(median))

    def same_plan(self, plan: dict[str, Any]) -> int | None:
        """The trial a plan already ran as, if any.

        Args:
            plan: a plan as a dict.

        Returns:
            The first trial with the file that plan made; None for a new plan.
        """
        return self.plans.get(plan_key(plan))

    def pooled(self, sha: str, device: str, fresh: float) -> tuple[float, int]:
        """The median over every measurement of the file, this fresh one included, and
        how many there are.

        Args:
            sha: the file's sha256.
            device: the device name.
            fresh: the new median, in ms.

        Returns:
            (the pooled median in ms, the number of medians).
        """
        medians = [*self.medians.get(sha, {}).get(device, []), fresh]
        return statistics.median(medians), len(medians)

    def take_scores(self, out: TrialOutput) -> None:
        """When ``out`` was converted to a file an earlier trial made and scored, it takes
        that trial's scores: it was not scored here (``known_file``), or it was scored
        while that trial was still in flight.

        Args:
            out: a finished trial's output; changed in place.
        """
        earlier = self.files.get(out.tflite_sha256)
        if out.same_as is None and earlier is not None:
            self.fill_scores(out, earlier)
            out.notes.append(f"same file as trial #{earlier}: its scores, measured again")

    def fill_scores(self, out: TrialOutput, earlier: int) -> None:
        """``out`` takes the scores of trial ``earlier``, whose file it is.

        Args:
            out: the output; changed in place (``same_as`` set).
            earlier: an indexed trial that made the file.
        """
        scores = self.scores[earlier]
        out.metric = float(scores["metric"])
        out.size_bytes, out.macs, out.params = (
            int(scores["size_bytes"] or 0),
            int(scores["macs"] or 0),
            int(scores["params"] or 0),
        )
        out.ops = dict(scores.get("ops") or {})
        out.layer_macs = dict(scores.get("layer_macs") or {})
        out.tflite_sha256 = str(scores["tflite_sha256"])
        out.same_as = earlier


def reuse_output(
    folder: Path, number: int, earlier: int, known: KnownCandidates
) -> TrialOutput | None:
    """Trial ``number``'s output made of trial ``earlier``'s file and scores, without
    building anything; None when that file is not in the results folder (then build).

    Args:
        folder: the study's results folder.
        number: the new trial's number.
        earlier: the trial with the same plan.
        known: the study's known candidates.

    Returns:
        The output, or None as above.
    """
    path = folder / attrs.TRIALS_DIR / str(earlier) / "model.tflite"
    if earlier not in known.scores or not path.is_file():
        return None
    out = TrialOutput(number, tflite=path.read_bytes())
    known.fill_scores(out, earlier)
    out.node = known.scores[earlier].get("built_on")  # where the file was built
    out.notes.append(f"same plan as trial #{earlier}: its file and scores, measured again")
    return out

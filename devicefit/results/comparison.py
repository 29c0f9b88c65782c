"""Several studies side by side (another device, sampler or technique set): their fronts and
their hypervolumes against one common reference point, so the numbers can be compared."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from devicefit.errors import UsageError
from devicefit.results._io import write_atomic
from devicefit.results.hypervolume import (
    align_objectives,
    common_reference,
    reference_for,
    study_hypervolume,
)
from devicefit.results.pareto import pareto_front
from devicefit.results.records import StudyRecord, TrialRecord
from devicefit.results.report import finite, front_member, reference_values
from devicefit.results.table import headline


@dataclass
class StudyComparison:
    records: list[StudyRecord]
    labels: list[str]  # the study names, or their folders where two names are the same
    perms: list[list[int]]  # each study's index of each of the first study's objectives
    reference: list[float] | None  # minimisation space, the objectives of the first study
    volumes: list[float]
    fronts: list[list[TrialRecord]]

    @property
    def same_devices(self) -> bool:
        """Whether every study measured on the same set of devices."""
        devices = [sorted(o.device or "" for o in r.objectives) for r in self.records]
        return all(d == devices[0] for d in devices)

    def caveat(self) -> str:
        """Absolute latencies favour the faster device; say so when devices differ.

        Returns:
            A paragraph for the reader when the studies ran on different devices, else "".
        """
        if self.same_devices:
            return ""
        return (
            "The studies ran on different devices: their hypervolumes compare absolute "
            "latencies, so a faster device scores higher whatever the search found; each "
            "study's headline gives its speed-up over its own float32 model."
        )


def compare_studies(records: Sequence[StudyRecord]) -> StudyComparison:
    """Line up several studies: aligned objectives, one common reference point, and each
    study's front and hypervolume against it.

    Args:
        records: the studies; the first one's objective order is the one compared.

    Returns:
        The comparison; every volume is 0 while no study has an eligible trial.

    Raises:
        UsageError: fewer than two studies, one study given twice, or studies whose
            objectives do not match (``align_objectives``).
    """
    if len(records) < 2:
        raise UsageError("--compare: give at least two results folders")
    where = [(str(Path(r.folder).resolve()), r.storage, r.name) for r in records]
    if len(set(where)) != len(where):
        raise UsageError("--compare: a study is given twice")
    names = [r.name for r in records]
    labels = names if len(set(names)) == len(names) else [str(r.folder) for r in records]
    perms = align_objectives(records)
    ref = common_reference(records, perms)
    volumes = [
        study_hypervolume(r, reference_for(ref, perm)) if ref is not None else 0.0
        for r, perm in zip(records, perms, strict=True)
    ]
    fronts = [pareto_front(r) for r in records]
    return StudyComparison(list(records), labels, perms, ref, volumes, fronts)


def comparison_json(c: StudyComparison) -> str:
    """The comparison as JSON, for ``--format json``.

    Args:
        c: the comparison.

    Returns:
        The reference point, each study's devices, objectives, hypervolume, headline and
        front, and the caveat (null when none); non-finite numbers as null.
    """
    first = c.records[0]
    doc = {
        "reference_point": reference_values(first, c.reference),
        "studies": [
            {
                "study": label,
                "folder": str(r.folder),
                "devices": list(r.devices),
                "objectives": [o.name for o in r.objectives],
                "hypervolume": volume,
                "headline": headline(r, front),
                "front": [front_member(r, t) for t in front],
            }
            for label, r, volume, front in zip(
                c.labels, c.records, c.volumes, c.fronts, strict=True
            )
        ],
        "note": c.caveat() or None,
    }
    return json.dumps(finite(doc), indent=2, allow_nan=False) + "\n"


def comparison_table(c: StudyComparison) -> Table:
    """The terminal table of the comparison.

    Args:
        c: the comparison.

    Returns:
        One row per study: devices, completed trials, front size and hypervolume.
    """
    table = Table(title="Studies compared (hypervolume against one reference point)")
    for header in ("study", "devices", "completed", "on the front", "hypervolume"):
        table.add_column(header, justify="left" if header in ("study", "devices") else "right")
    for label, r, volume, front in zip(c.labels, c.records, c.volumes, c.fronts, strict=True):
        done = sum(t.complete for t in r.trials)
        table.add_row(label, ", ".join(r.devices), str(done), str(len(front)), f"{volume:.6g}")
    return table


def reference_text(c: StudyComparison) -> str:
    """The reference point the hypervolumes share, as a sentence for the terminal.

    Args:
        c: the comparison.

    Returns:
        The point's value per objective, followed by the caveat when devices differ; a
        notice when no study has a feasible trial yet.
    """
    values = reference_values(c.records[0], c.reference)
    if values is None:
        return "No study has a feasible trial yet: no reference point."
    text = "Reference point: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items())
    return text + (f"\n{c.caveat()}" if c.caveat() else "")


def write_comparison(c: StudyComparison, path: Path) -> Path:
    """Write the HTML comparison page.

    Args:
        c: the comparison.
        path: the HTML file to (re)write.

    Returns:
        The path written.
    """
    from devicefit.results.report_html import compare_html

    return write_atomic(Path(path), compare_html(c))

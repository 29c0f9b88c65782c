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
from devicefit.results.hypervolume import common_reference, study_hypervolume
from devicefit.results.pareto import pareto_front
from devicefit.results.records import StudyRecord
from devicefit.results.report import finite, front_member, reference_values
from devicefit.results.table import headline


@dataclass
class StudyComparison:
    records: list[StudyRecord]
    reference: list[float] | None  # minimisation space, the objectives of the first study
    volumes: list[float]


def compare_studies(records: Sequence[StudyRecord]) -> StudyComparison:
    if len(records) < 2:
        raise UsageError("--compare: give at least two results folders")
    names = [r.name for r in records]
    if len(set(names)) != len(names):
        raise UsageError(f"--compare: a study is given twice ({', '.join(names)})")
    ref = common_reference(records)
    volumes = [study_hypervolume(r, ref) if ref is not None else 0.0 for r in records]
    return StudyComparison(list(records), ref, volumes)


def comparison_json(c: StudyComparison) -> str:
    first = c.records[0]
    doc = {
        "reference_point": reference_values(first, c.reference),
        "studies": [
            {
                "study": r.name,
                "folder": str(r.folder),
                "devices": list(r.devices),
                "objectives": [o.name for o in r.objectives],
                "hypervolume": volume,
                "headline": headline(r, front),
                "front": [front_member(r, t) for t in front],
            }
            for r, volume, front in zip(c.records, c.volumes, _fronts(c), strict=True)
        ],
    }
    return json.dumps(finite(doc), indent=2, allow_nan=False) + "\n"


def comparison_table(c: StudyComparison) -> Table:
    table = Table(title="Studies compared (hypervolume against one reference point)")
    for header in ("study", "devices", "completed", "on the front", "hypervolume"):
        table.add_column(header, justify="left" if header in ("study", "devices") else "right")
    for r, volume, front in zip(c.records, c.volumes, _fronts(c), strict=True):
        done = sum(t.complete for t in r.trials)
        table.add_row(r.name, ", ".join(r.devices), str(done), str(len(front)), f"{volume:.6g}")
    return table


def reference_text(c: StudyComparison) -> str:
    values = reference_values(c.records[0], c.reference)
    if values is None:
        return "No study has a feasible trial yet: no reference point."
    return "Reference point: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items())


def write_comparison(c: StudyComparison, path: Path) -> Path:
    from devicefit.results.report_html import compare_html

    return write_atomic(Path(path), compare_html(c.records, c.reference, c.volumes))


def _fronts(c: StudyComparison) -> list[list]:
    return [pareto_front(r) for r in c.records]

"""The report's "What each unit tolerates": per unit and technique, the metric given up at
the mild, medium and strong settings, from the study's sensitivity.json."""

from __future__ import annotations

import json
import re
from typing import Any

from devicefit.results.pareto import pareto_front
from devicefit.results.records import load_study_record
from devicefit.results.report import summary
from devicefit.results.report_html import render_html
from devicefit.results.sensitivity_table import drop_rows
from devicefit.search import attrs


def _point(unit: str, technique: str, level: str, drop: float | None, error: str | None = None):
    return {
        "unit": unit,
        "layers": [unit],
        "technique": technique,
        "level": level,
        "setting": 0,
        "metric": None if drop is None else 97.0 - drop,
        "drop": drop,
        "error": error,
    }


PROFILE = {
    "key": {"granularity": "per-block", "samples": 256, "techniques": ["channel_pruning"]},
    "points": [
        _point("block1", "channel_pruning", "identity", 0.0),
        _point("block1", "channel_pruning", "mild", 0.4),
        _point("block1", "channel_pruning", "medium", 2.5),
        _point("block1", "channel_pruning", "strong", 31.0),
        _point("head", "lowrank", "identity", 0.0),
        _point("head", "lowrank", "mild", None, "ValueError: rank too small"),
    ],
    "complete": False,
    "seconds": 12.3,
}


def _study(make_study: Any, profile: dict | None = PROFILE) -> Any:
    fake = make_study()
    fake.add(97.0, 2.0, baseline="float32", sha="f32")
    if profile is not None:
        (fake.folder / attrs.SENSITIVITY_FILE).write_text(json.dumps(profile))
    return load_study_record(fake.folder)


def test_rows_per_unit_and_technique_with_every_level() -> None:
    rows = drop_rows(PROFILE)
    assert rows[0] == ("block1", "channel_pruning", [0.4, 2.5, 31.0])
    # A failed setting keeps its error; a level the stopped profile never reached is None.
    assert rows[1] == ("head", "lowrank", ["failed: ValueError: rank too small", None, None])


def test_the_report_shows_table_and_heat_map(make_study: Any) -> None:
    record = _study(make_study)
    page = render_html(record, pareto_front(record))
    section = page[page.index("<section id='sensitivity'>") :]
    section = section[: section.index("</section>")]
    assert "What each unit tolerates" in section
    assert 'id="sensitivity-plot"' in section
    assert re.search(
        r"<td>block1</td><td>channel_pruning</td><td>\+0\.4</td><td>\+2\.5</td>"
        r"<td>\+31</td>",
        section,
    )
    assert "title='failed: ValueError: rank too small'" in section
    assert "on 256 validation examples; units: per-block. Made in 12 s; not finished" in section
    assert "Time saved" not in section  # no savings were checked in this profile


def test_json_carries_the_profile(make_study: Any) -> None:
    record = _study(make_study)
    assert summary(record, pareto_front(record))["sensitivity"] == PROFILE


def test_a_study_without_a_profile_says_so(make_study: Any) -> None:
    record = _study(make_study, None)
    assert "No sensitivity profile in this study." in render_html(record, pareto_front(record))
    assert summary(record, pareto_front(record))["sensitivity"] is None


CHECKS = [
    {"unit": "block1", "technique": "channel_pruning", "level": "strong", "setting": 0.7,
     "device": "local", "predicted_ms": 0.812, "measured_ms": 0.655, "untouched_ms": 2.2},
    {"unit": "head", "technique": "lowrank", "level": "medium", "setting": 0.5,
     "device": "local", "predicted_ms": 0.3, "error": "TrialFailed: did not run"},
]  # fmt: skip


def test_the_report_shows_predicted_against_measured_savings(make_study: Any) -> None:
    record = _study(make_study, {**PROFILE, "savings_check": CHECKS})
    page = render_html(record, pareto_front(record))
    section = page[page.index("<section id='sensitivity'>") :]
    section = section[: section.index("</section>")]
    assert "Time saved: predicted and measured" in section
    assert re.search(
        r"<td>block1</td><td>channel_pruning</td><td>strong</td><td>local</td>"
        r"<td>0\.812</td><td>0\.655</td>",
        section,
    )
    assert "title='TrialFailed: did not run'>not measured" in section
    assert summary(record, pareto_front(record))["sensitivity"]["savings_check"] == CHECKS


def test_each_profile_plan_names_the_trial_that_ran_it_or_says_not_run(make_study: Any) -> None:
    from dataclasses import replace

    from devicefit.results.sensitivity_table import profile_plans_list

    record = _study(make_study)
    choice = {"technique": "channel_pruning", "level": "strong", "unit": "block1"}
    ran = replace(record.trials[0], number=7, profile_plan="greedy-8x")
    record = replace(
        record,
        trials=[*record.trials, ran],
        profile_plans={"greedy-8x": [choice], "greedy-20x": [choice, {**choice, "unit": "b2"}]},
    )
    listed = profile_plans_list(record)
    assert "<li>greedy-8x (trial #7): channel_pruning strong on block1</li>" in listed
    assert "<li>greedy-20x (not run): channel_pruning strong on block1, " in listed

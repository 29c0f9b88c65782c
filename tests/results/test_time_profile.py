"""The report's "Where the time goes": each layer's measured time share beside its MACs
share, from the study's device_profile.json."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devicefit.results.pareto import pareto_front
from devicefit.results.records import load_study_record
from devicefit.results.report import summary
from devicefit.results.report_html import render_html
from devicefit.results.time_profile import share_rows
from devicefit.search import attrs

PROFILE = {
    "local": {
        "float32": {
            "layers": {"conv": 1.0, "fc": 2.5, "flatten": 0.1},
            "blocks": {"block1": 1.0, "block2": 2.6},
            "groups": {"conv": 1.0, "fc": 2.5},
            "unmapped": {"QUANTIZE tfl.quantize": 0.4},
            "run_ms": 4.2,
            "median_ms": 4.4,
        },
        "int8": {
            "layers": {"conv": 0.5},
            "blocks": {},
            "groups": {},
            "unmapped": {},
            "run_ms": 0.6,
            "median_ms": 0.6,
        },
    },
    "pi": {
        "float32": {"unavailable": "pi: no per-op profile: no libLiteRt.so"},
        "int8": {"unavailable": "pi: no per-op profile: no libLiteRt.so"},
    },
}


def _study(make_study: Any) -> Any:
    fake = make_study(devices=["local", "pi"])
    fake.add(97.0, {"local": 4.4, "pi": 9.0}, baseline="float32", sha="f32")
    (fake.folder / attrs.DEVICE_PROFILE_FILE).write_text(json.dumps(PROFILE))
    inspect = [{"name": "conv", "macs": 900}, {"name": "fc", "macs": 100}]
    (fake.folder / attrs.INSPECT_FILE).write_text(json.dumps(inspect))
    return fake


def test_shares_of_time_and_of_macs_largest_first() -> None:
    rows = share_rows(PROFILE["local"]["float32"], {"conv": 900, "fc": 100})
    assert [r[0] for r in rows] == ["fc", "conv", "unmapped: QUANTIZE tfl.quantize", "flatten"]
    fc = rows[0]
    assert fc[1] == pytest.approx(2.5 / 4.0) and fc[2] == pytest.approx(0.1)
    assert sum(r[1] for r in rows) == pytest.approx(1.0)


def test_the_report_shows_it_per_device_and_says_why_not(make_study: Any) -> None:
    record = load_study_record(_study(make_study).folder)
    page = render_html(record, pareto_front(record))
    section = page[page.index("<section id='time-profile'>") :]
    section = section[: section.index("</section>")]
    assert "Where the time goes" in section
    # One plot, for the device that profiled.
    assert re.findall(r'id="(time-profile-plot-\d+)"', section) == ["time-profile-plot-0"]
    assert "pi: no profile: pi: no per-op profile: no libLiteRt.so" in section
    assert re.search(
        r"local: float32, median 4\.400 ms; in the profiled runs \(4\.200 ms each\) the ops "
        r"took 95%",
        section,
    )


def test_json_carries_the_profiles(make_study: Any) -> None:
    record = load_study_record(_study(make_study).folder)
    data = summary(record, pareto_front(record))
    assert data["device_profile"] == PROFILE


def test_a_study_without_profiles_says_so(make_study: Any) -> None:
    fake = make_study()
    fake.add(97.0, 2.0, baseline="float32", sha="f32")
    record = load_study_record(fake.folder)
    assert "No device profile in this study." in render_html(record, pareto_front(record))
    assert summary(record, pareto_front(record))["device_profile"] is None


def test_a_device_whose_float32_profile_failed_gets_a_note_not_a_crash(make_study: Any) -> None:
    fake = _study(make_study)
    broken = {
        "local": {
            "float32": {"unavailable": "TrialFailed: the file did not run"},
            "int8": PROFILE["local"]["int8"],
        }
    }
    (fake.folder / attrs.DEVICE_PROFILE_FILE).write_text(json.dumps(broken))
    record = load_study_record(fake.folder)
    page = render_html(record, pareto_front(record))
    assert "local: no profile: TrialFailed: the file did not run" in page
    assert 'id="time-profile-plot-' not in page

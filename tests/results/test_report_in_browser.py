"""The report of real digits searches, opened in Debian's headless Chromium.

Slow: two real searches (one watched live while it runs). Every test here shares them, so
they stay on one xdist worker.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from browser import open_page
from hv_reference import grid_volume
from optuna.trial import TrialState
from playwright.sync_api import Error as PlaywrightError
from studies import FAST_DIGITS

from devicefit.search import attrs

# The first test's set-up runs a 12-trial search, and on a fresh cache trains the digits
# task first: more than the suite's 600 s hang guard on a loaded 2-core machine.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("report-browser"),
    pytest.mark.timeout(1200),
]

SECTIONS = (
    "headline",
    "front",
    "hypervolume",
    "time-profile",
    "sensitivity",
    "techniques",
    "importance",
    "trials",
    "details",
)


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devicefit", *args], capture_output=True, text=True, timeout=timeout
    )


def _search_args(root: Path, name: str, trials: int, seed: int) -> list[str]:
    config = root / f"{name}.toml"
    config.write_text(FAST_DIGITS.replace("seed = 0", f"seed = {seed}"))
    return ["search", "--config", str(config), "--trials", str(trials), "--study", name]


def _optuna(folder: Path) -> optuna.Study:
    return optuna.load_study(study_name=folder.name, storage=f"sqlite:///{folder / 'study.db'}")


def candidates(study: optuna.Study) -> dict[int, list[float]]:
    """From the stored trials alone, one point per file (trials whose files hash alike are
    one candidate): the first trial's number -> [metric, the median over every measurement
    of the file]; feasible candidates only."""
    done = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    files: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in done:
        files.setdefault(trial.user_attrs[attrs.METRICS]["tflite_sha256"], []).append(trial)
    points = {}
    for members in files.values():
        first = members[0]
        if not all(v <= 0 for v in first.constraints.values()):
            continue
        own = [m.user_attrs[attrs.METRICS]["latency"]["local"]["median_ms"] for m in members]
        latency = statistics.median(own) if len(members) > 1 else first.values[1]
        points[first.number] = [first.values[0], latency]
    return points


def independent_hypervolume(study: optuna.Study, ref: list[float] | None = None) -> float:
    """From the stored values alone: accuracy (maximised, so negated) and latency of each
    candidate; reference = the budget's edge and the float32 trial's latency."""
    points = [[-metric, latency] for metric, latency in candidates(study).values()]
    return grid_volume(points, ref or own_reference(study))


def own_reference(study: optuna.Study) -> list[float]:
    info = study.user_attrs[attrs.STUDY_KEY]
    float32 = next(
        t
        for t in study.get_trials(states=(TrialState.COMPLETE,))
        if t.user_attrs.get(attrs.BASELINE) == "float32"
    )
    # The float32 file's latency pooled over every trial that made the same bytes (a later
    # plan at its identity setting does), as for any other candidate.
    return [
        -(info["reference_metric"] - info["max_metric_drop"]),
        candidates(study)[float32.number][1],
    ]


def non_dominated_numbers(study: optuna.Study) -> list[int]:
    points = candidates(study)

    def beats(a: list[float], b: list[float]) -> bool:
        ge = a[0] >= b[0] and a[1] <= b[1]
        return ge and (a[0] > b[0] or a[1] < b[1])

    return sorted(n for n, p in points.items() if not any(beats(o, p) for o in points.values()))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report-browser")


@pytest.fixture(scope="module")
def finished(root: Path) -> Path:
    """A finished digits study with enough trials for parameter importances."""
    run = _cli(*_search_args(root, "finished", 12, 0), "--results", str(root))
    assert run.returncode == 0, run.stderr[-3000:]
    return root / "finished"


@pytest.fixture(scope="module")
def live(root: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A digits study still running in the background; the driver rewrites its report."""
    log = (root / "live.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devicefit", *_search_args(root, "live", 10, 1)]
        + ["--results", str(root)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc, root / "live"
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)
    log.close()


def _wait_finished(live: tuple[subprocess.Popen[str], Path]) -> Path:
    proc, folder = live
    assert proc.wait(timeout=900) == 0, (folder.parent / "live.log").read_text()[-3000:]
    return folder


def test_report_renders_every_section_offline(finished: Path, tmp_path: Path) -> None:
    report = _cli("report", str(finished))
    assert report.returncode == 0, report.stderr
    study = _optuna(finished)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    with open_page(finished / "report.html") as view:
        page = view.page
        for section in SECTIONS:
            box = page.locator(f"section#{section}").bounding_box()
            assert box is not None and box["height"] > 0, section
        shot = view.screenshot(tmp_path / "report.png")
        assert shot.stat().st_size > 50_000
        points = view.plot_points()
        # One panel (accuracy against latency): every file is one point (trials that made
        # the same file are one candidate).
        files = {t.user_attrs[attrs.METRICS]["tflite_sha256"] for t in complete}
        assert sum(points["front-plot"]) == len(files)
        # Hypervolume by trials and by time: one point per completed trial each.
        assert points["hypervolume-plot"] == [len(complete), len(complete)]
        used = {s["technique"] for t in complete for s in t.user_attrs[attrs.PLAN]["steps"]}
        assert points["techniques-plot"] == [len(used), len(used)]
        traces = view.plot_traces()["importance-plot"]
        assert [t["name"] for t in traces] == ["accuracy", "latency_local"]
        assert all(t["points"] > 0 for t in traces)

        # The table: every trial a row; a status filter and a numeric sort that work.
        rows = page.locator("#trials-table tbody tr")
        assert rows.count() == len(study.trials)
        page.select_option("#status-filter", "front")
        front = non_dominated_numbers(study)
        assert page.locator("#trials-table tbody tr:visible").count() == len(front)
        page.select_option("#status-filter", "")
        page.locator("#trials-table th", has_text="median ms").click()
        first = int(rows.first.get_attribute("data-n"))
        own = {t.number: t.user_attrs[attrs.METRICS]["latency"]["local"] for t in complete}
        fastest = min(own, key=lambda n: (own[n]["median_ms"], n))
        assert own[first]["median_ms"] == own[fastest]["median_ms"]

        # A trial's detail view: plan, per-layer MACs before/after, its export command.
        number = front[-1]
        detail = page.locator(f"#trial-{number}")
        assert not detail.is_visible()
        page.locator(f"#trials-table a[href='#trial-{number}']").click()
        assert detail.is_visible()
        assert detail.locator("table.layers tbody tr").count() > 3
        assert f"devicefit export {finished} --trial {number}" in detail.inner_text()
        view.screenshot(tmp_path / "detail.png", full_page=False)
    assert view.console_errors == [] and view.page_errors == []
    assert view.external_requests == []
    assert all(url.startswith("file:") for url in view.requests)


def test_shown_hypervolume_equals_an_independent_one(finished: Path) -> None:
    assert _cli("report", str(finished)).returncode == 0
    with open_page(finished / "report.html") as view:
        shown = float(view.page.get_attribute("#hypervolume-value", "data-value"))
    expected = independent_hypervolume(_optuna(finished))
    assert expected > 0
    assert shown == pytest.approx(expected, rel=1e-12)


def test_json_format_round_trips_the_stored_values(finished: Path) -> None:
    run = _cli("report", str(finished), "--format", "json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    study = _optuna(finished)
    points = candidates(study)
    assert [m["number"] for m in doc["front"]] == non_dominated_numbers(study)
    for member in doc["front"]:
        assert list(member["values"].values()) == points[member["number"]]
    assert doc["hypervolume"] == pytest.approx(independent_hypervolume(study), rel=1e-12)


def test_running_study_report_refreshes_with_new_trials(
    live: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, folder = live
    report = folder / "report.html"
    deadline = time.monotonic() + 600
    while not report.exists():
        assert proc.poll() is None, "the search ended before writing a live report"
        assert time.monotonic() < deadline
        time.sleep(1)
    with open_page(report) as view:
        assert view.page.get_attribute("#state", "data-live") == "true"
        seen = [_front_points(view)]
        # The page reloads itself; wait for reloads until it shows more trials.
        while seen[-1] <= seen[0] and time.monotonic() < deadline:
            view.page.wait_for_event("load", timeout=120_000)
            seen.append(_front_points(view))
        assert seen[-1] > seen[0], seen
    assert view.console_errors == [] and view.external_requests == []
    _wait_finished(live)
    final = report.read_text()
    assert 'http-equiv="refresh"' not in final and "data-live='false'" in final


def _front_points(view: Any) -> int:
    """Points in the front plot, read again if a reload starts while reading."""
    for attempt in range(3):
        try:
            view.wait_for_plots()
            return sum(view.plot_points()["front-plot"])
        except PlaywrightError:
            if attempt == 2:
                raise
            view.page.wait_for_load_state("load")
    raise AssertionError("unreachable")


def test_compare_shows_both_fronts_and_hypervolumes(
    finished: Path, live: tuple[subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    other = _wait_finished(live)
    out = tmp_path / "compare.html"
    run = _cli("report", "--compare", str(finished), str(other), "--out", str(out))
    assert run.returncode == 0, run.stderr
    studies = {"finished": _optuna(finished), "live": _optuna(other)}
    # One reference point for both: the worse of the two on each objective.
    refs = [own_reference(s) for s in studies.values()]
    common = [max(column) for column in zip(*refs, strict=True)]
    with open_page(out) as view:
        traces = view.plot_traces()["front-plot"]
        assert {t["name"]: t["points"] for t in traces} == {
            name: len(non_dominated_numbers(s)) for name, s in studies.items()
        }
        for name, study in studies.items():
            cell = view.page.locator(f"tr[data-study='{name}'] td.hv")
            shown = float(cell.get_attribute("data-value"))
            assert shown == pytest.approx(independent_hypervolume(study, common), rel=1e-12)
        shown_ref = json.loads(view.page.get_attribute("#reference-point", "data-reference"))
        assert shown_ref == pytest.approx(common)
        view.screenshot(tmp_path / "compare.png")
        assert sum(view.plot_points()["hypervolume-plot"]) > 0
    assert view.console_errors == [] and view.page_errors == []
    assert view.external_requests == []

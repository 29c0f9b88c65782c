"""report.html of stored studies in headless Chromium: quick checks of the page's own code
(sorting, filtering, detail views, a study with nothing yet). The real searches are in
test_report_in_browser.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
from browser import open_page
from optuna.trial import TrialState
from rich.console import Console

from devicefit.results.hypervolume import reference_point
from devicefit.results.pareto import pareto_front
from devicefit.results.records import load_study_record
from devicefit.results.report import print_report, write_report
from devicefit.search import attrs


def _report(fake) -> Path:  # noqa: ANN001 - the conftest's FakeStudy
    return write_report(load_study_record(fake.folder), fake.folder)["html"]


def test_table_sorts_filters_and_opens_details(make_study) -> None:
    fake = make_study(devices=["pi", "laptop"])
    fake.add(97.0, {"pi": 8.0, "laptop": 4.0}, baseline="float32")
    fake.add(96.5, {"pi": 2.0, "laptop": 3.0}, recipe="lowrank")
    fake.add(96.8, {"pi": 4.0, "laptop": 1.0})
    fake.add(92.0, {"pi": 1.0, "laptop": 0.5})  # infeasible
    fake.fail("conversion failed: unsupported op")
    with open_page(_report(fake)) as view:
        page = view.page
        # Three objectives: three panels, four completed trials in each.
        assert sum(view.plot_points()["front-plot"]) == 3 * 4
        rows = page.locator("#trials-table tbody tr")
        assert rows.count() == 5
        page.locator("#trials-table th", has_text="laptop median ms").click()
        assert [r.get_attribute("data-n") for r in rows.all()] == ["3", "2", "1", "0", "4"]
        page.locator("#trials-table th", has_text="laptop median ms").click()  # descending
        assert [r.get_attribute("data-n") for r in rows.all()] == ["0", "1", "2", "3", "4"]
        page.fill("#filter", "unsupported")
        assert page.locator("#trials-table tbody tr:visible").count() == 1
        assert page.locator("#shown").inner_text() == "1 of 5 trials shown"
        page.fill("#filter", "")
        page.select_option("#status-filter", "infeasible")
        visible = page.locator("#trials-table tbody tr:visible")
        assert visible.count() == 1 and visible.get_attribute("data-n") == "3"

        for number in (2, 4):  # a completed trial and a failed one
            page.evaluate(f"window.location.hash = 'trial-{number}'")
            assert page.locator(f"#trial-{number}").is_visible()
        assert "unsupported op" in page.locator("#trial-4").inner_text()
        assert not page.locator("#trial-2").is_visible()
    assert view.console_errors == [] and view.page_errors == [] and view.external_requests == []


def test_a_study_with_nothing_completed_renders(make_study) -> None:
    fake = make_study()
    fake.fail("device unavailable")
    with open_page(_report(fake)) as view:
        assert "no completed trials yet" in view.page.locator("#headline").inner_text()
        assert view.page.locator("#hypervolume").inner_text().endswith("No feasible trial yet.")
        assert view.page.locator("#trials-table tbody tr").count() == 1
    assert view.console_errors == [] and view.page_errors == [] and view.external_requests == []


def _odd_study(folder: Path) -> optuna.Study:
    """Three objectives (one of them peak memory), no float32 trial, trials in every state,
    an infinite latency and text that would be markup if it were not escaped."""
    folder.mkdir(parents=True)
    objectives = [
        {"name": "accuracy", "direction": "maximize", "unit": "%"},
        {"name": "latency_pi", "direction": "minimize", "unit": "ms", "device": "pi"},
        {
            "name": "peak_memory_pi",
            "direction": "minimize",
            "unit": "MB",
            "device": "pi",
            "kind": "peak_memory",
        },
    ]
    study = optuna.create_study(
        study_name="odd",
        storage=f"sqlite:///{folder / attrs.DB_FILE}",
        directions=["maximize", "minimize", "minimize"],
    )
    study.set_user_attr(
        attrs.STUDY_KEY,
        {
            "metric": {"name": "accuracy", "higher_is_better": True, "unit": "%"},
            "objectives": objectives,
            "max_metric_drop": 1.0,
            "reference_metric": None,
            "devices": {"pi": {"kind": "agent"}},
        },
    )
    (folder / attrs.STUDY_FILE).write_text(json.dumps({"study_name": "odd", "storage": None}))
    evil = "<script>window.pwned = 1</script>'\""
    for metric, latency, memory in ((96.5, 2.0, 30.0), (96.0, 1.0, 50.0), (96.2, math.inf, 5.0)):
        plan = {"steps": [{"technique": "lowrank", "params": {"rank": evil}}], "finetune_epochs": 0}
        metrics = {
            "metric": metric,
            "latency": {"pi": {"median_ms": latency, "p90_ms": latency, "peak_memory_mb": memory}},
        }
        study.add_trial(
            optuna.trial.create_trial(
                values=[metric, latency, memory],
                user_attrs={attrs.PLAN: plan, attrs.PLAN_SHORT: evil, attrs.METRICS: metrics},
                constraints={attrs.CONSTRAINT: -0.5},
            )
        )
    for state in (TrialState.RUNNING, TrialState.PRUNED, TrialState.WAITING):
        study.add_trial(optuna.trial.create_trial(state=state))
    fail = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={attrs.FAIL_REASON: evil})
    study.add_trial(fail)
    return study


def test_odd_study_renders_safely(tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    _odd_study(folder)
    record = load_study_record(folder)
    # The infinite latency is a broken measurement: not on the front, no infinite reference.
    assert [t.number for t in pareto_front(record)] == [0, 1]
    assert all(math.isfinite(v) for v in reference_point(record))
    html = write_report(record, folder, live=record.running)["html"]
    assert json.loads((folder / "pareto.json").read_text())["hypervolume"] > 0
    with open_page(html) as view:
        page = view.page
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert page.get_attribute("#state", "data-live") == "true"  # a RUNNING trial
        rows = page.locator("#trials-table tbody tr")
        assert rows.count() == 7
        statuses = [r.get_attribute("data-status") for r in rows.all()]
        assert statuses[3:] == ["running", "pruned", "waiting", "fail"]
        assert "<script>window.pwned = 1</script>" in page.locator("#trial-6").inner_text()
        # Metric against latency, metric against memory, latency against memory.
        assert len(view.plot_points()["front-plot"]) > 0
        headers = page.locator("#trials-table thead th").all_inner_texts()
        assert "peak MB" in headers
    assert view.console_errors == [] and view.page_errors == [] and view.external_requests == []

    console = Console(record=True, width=250)
    print_report(record, console)
    text = console.export_text()
    assert "peak_memory_pi (MB)" in text and "30.00" in text and "50.00" in text


def test_clicking_a_plot_point_opens_its_detail_view(make_study) -> None:
    fake = make_study()
    fake.add(97.0, 8.0, baseline="float32")
    fake.add(96.5, 2.0)
    fake.add(96.1, 5.0)  # dominated
    with open_page(_report(fake)) as view:
        page = view.page
        assert not page.locator("#trial-2").is_visible()
        # Where Plotly drew trial 2's marker, in page pixels.
        x, y = page.evaluate(
            """() => {
                const gd = document.getElementById('front-plot');
                const trace = gd.data.find(t => t.name === 'dominated');
                const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
                const box = gd.getBoundingClientRect();
                return [box.left + xa._offset + xa.d2p(trace.x[0]),
                        box.top + ya._offset + ya.d2p(trace.y[0])];
            }"""
        )
        page.mouse.click(x, y)
        page.wait_for_function("window.location.hash === '#trial-2'", timeout=10_000)
        assert page.locator("#trial-2").is_visible()
    assert view.console_errors == [] and view.page_errors == []

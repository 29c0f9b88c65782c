import csv
import json
import re

import pytest
from rich.console import Console

from devicefit.results.pareto import pareto_front
from devicefit.results.plot import build_figure
from devicefit.results.records import load_study_record
from devicefit.results.report import print_report, write_report


def figure_data_from_html(text: str) -> list[dict]:
    """The trace list plotly writes as the second argument of Plotly.newPlot("id", [...], ...)."""
    start = text.index("Plotly.newPlot(")
    match = re.compile(r'\s*"[^"]+",\s*').match(text, start + len("Plotly.newPlot("))
    data, _ = json.JSONDecoder().raw_decode(text, match.end())
    return data


def small_study(make_study, devices=None):
    fake = make_study(devices=devices)
    lat = (
        (lambda v: v)
        if devices is None
        else (lambda v: {d: v * (i + 1) for i, d in enumerate(devices)})
    )
    fake.add(97.0, lat(8.0), baseline="float32")
    fake.add(96.9, lat(4.0), baseline="float16")
    fake.add(96.2, lat(2.0), baseline="int8")
    fake.add(96.1, lat(1.5))  # front, fastest feasible
    fake.add(96.0, lat(3.5))  # dominated by the int8 baseline
    fake.add(92.0, lat(1.0))  # infeasible
    fake.fail("conversion failed")
    return fake


def test_write_report_files(make_study):
    fake = small_study(make_study)
    rec = load_study_record(fake.folder)
    paths = write_report(rec, fake.folder)

    assert {p.name for p in paths.values()} == {"report.html", "pareto.json", "trials.csv"}
    assert not list(fake.folder.glob(".*.tmp"))  # temp files were renamed, not left behind
    html = paths["html"].read_text()
    assert "<script src=" not in html and "https://cdn" not in html.split("Plotly.newPlot")[1]
    assert len(html) > 1_000_000  # plotly.js itself is inlined
    assert "Best feasible candidate: trial #3" in html and "5.33×" in html

    data = figure_data_from_html(html)
    points = [n for trace in data for n, *_ in trace["customdata"]]
    completed = [t.number for t in rec.trials if t.complete]
    assert sorted(points) == completed  # one point per completed trial, none twice
    names = {trace["name"] for trace in data}
    assert {"front", "dominated", "infeasible", "baseline float32", "baseline int8"} <= names
    infeasible = next(t for t in data if t["name"] == "infeasible")
    assert infeasible["marker"]["symbol"] == "x" and infeasible["customdata"][0][0] == 5

    front = json.loads(paths["pareto"].read_text())
    assert [m["number"] for m in front] == [t.number for t in pareto_front(rec)] == [0, 1, 2, 3]
    stored = {t.number: t.values for t in fake.study.trials}
    for member in front:
        assert list(member["values"].values()) == stored[member["number"]]
        assert member["plan"]["steps"] and member["metrics"]["size_bytes"] == 40_000

    rows = list(csv.DictReader(paths["trials"].open()))
    assert [int(r["number"]) for r in rows] == [t.number for t in rec.trials]
    assert rows[6]["state"] == "FAIL" and rows[6]["fail_reason"] == "conversion failed"
    assert rows[6]["feasible"] == "" and rows[6]["value_accuracy"] == ""
    assert rows[3]["status"] == "front"
    assert float(rows[3]["speedup_local"]) == pytest.approx(8.0 / 1.5)
    assert rows[5]["status"] == "infeasible" and rows[0]["baseline"] == "float32"


def test_figure_has_a_panel_and_one_point_per_trial_per_device(make_study):
    devices = ["pi", "laptop"]
    fake = small_study(make_study, devices)
    rec = load_study_record(fake.folder)
    fig = build_figure(rec, pareto_front(rec))
    for axis in ("x", "x2"):
        traces = [t for t in fig.data if t.xaxis == axis]
        assert sum(len(t.x) for t in traces) == 6
    laptop = [t for t in fig.data if t.xaxis == "x2" and t.name == "baseline float32"][0]
    assert list(laptop.x) == [16.0]  # laptop latencies are the doubled ones


def test_print_report_shows_headline_and_front(make_study):
    fake = small_study(make_study)
    console = Console(record=True, width=250)
    print_report(load_study_record(fake.folder), console)
    text = console.export_text()
    assert text.startswith("Best feasible candidate: trial #3")
    assert "accuracy -0.90 % vs float32 trial #0" in text
    assert "1 (float16)" in text and "2 (int8)" in text and "lowrank(rank=0.5)" in text
    assert "96.00" not in text  # the dominated trial is not in the front table
    assert "1 failed trial(s)" in text


def test_headline_when_nothing_is_feasible(make_study):
    fake = make_study()
    fake.add(80.0, 1.0)
    console = Console(record=True, width=200)
    print_report(load_study_record(fake.folder), console)
    assert "no feasible candidate" in console.export_text()
    paths = write_report(load_study_record(fake.folder), fake.folder)
    assert json.loads(paths["pareto"].read_text()) == []

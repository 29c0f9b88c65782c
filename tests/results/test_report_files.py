import csv
import json
import re

import pytest
from rich.console import Console

from devicefit.results.figures import front_figure
from devicefit.results.hypervolume import study_hypervolume
from devicefit.results.pareto import pareto_front
from devicefit.results.records import load_study_record
from devicefit.results.report import formatted, print_report, trials_csv, write_report
from devicefit.results.report_html import LIVE_RELOAD_S


def figure_data_from_html(text: str, div_id: str = "front-plot") -> list[dict]:
    """The trace list plotly writes as the second argument of Plotly.newPlot("id", [...], ...)."""
    match = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*', text)
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
    assert 'http-equiv="refresh"' not in html  # a finished study's page stays put
    assert "Best within the metric-drop budget (1 %): 5.33× faster on local" in html
    assert "−0.90 % accuracy" in html or "-0.90 % accuracy" in html
    for section in ("headline", "front", "hypervolume", "techniques", "importance", "trials"):
        assert f"<section id='{section}'>" in html
    for t in rec.trials:  # a detail view per trial, reached from its table row
        assert f'id="trial-{t.number}"' in html and f"href='#trial-{t.number}'" in html

    data = figure_data_from_html(html)
    points = [n for trace in data for n, *_ in trace["customdata"]]
    completed = [t.number for t in rec.trials if t.complete]
    assert sorted(points) == completed  # one point per completed trial, none twice
    names = {trace["name"] for trace in data}
    assert {"front", "dominated", "infeasible", "baseline float32", "baseline int8"} <= names
    infeasible = next(t for t in data if t["name"] == "infeasible")
    assert infeasible["marker"]["symbol"] == "x" and infeasible["customdata"][0][0] == 5
    front_trace = next(t for t in data if t["name"] == "front")
    # Latency error bars: median to p90 above, median to min below (fake: p90 1.1x, min 0.9x).
    assert front_trace["error_x"]["array"][0] == pytest.approx(0.15)
    assert front_trace["error_x"]["arrayminus"][0] == pytest.approx(0.15)

    doc = json.loads(paths["pareto"].read_text())
    front = doc["front"]
    assert [m["number"] for m in front] == [t.number for t in pareto_front(rec)] == [0, 1, 2, 3]
    stored = {t.number: t.values for t in fake.study.trials}
    for member in front:
        assert list(member["values"].values()) == stored[member["number"]]
        assert member["plan"]["steps"] and member["metrics"]["size_bytes"] == 40_000
    assert doc["reference_point"] == {"accuracy": 96.0, "latency_local": 8.0}
    assert doc["hypervolume"] == pytest.approx(study_hypervolume(rec))

    rows = list(csv.DictReader(paths["trials"].open()))
    assert [int(r["number"]) for r in rows] == [t.number for t in rec.trials]
    assert rows[6]["state"] == "FAIL" and rows[6]["fail_reason"] == "conversion failed"
    assert rows[6]["feasible"] == "" and rows[6]["value_accuracy"] == ""
    assert rows[3]["status"] == "front"
    assert float(rows[3]["speedup_local"]) == pytest.approx(8.0 / 1.5)
    assert rows[5]["status"] == "infeasible" and rows[0]["baseline"] == "float32"


def test_live_report_reloads_itself(make_study):
    fake = small_study(make_study)
    html = write_report(load_study_record(fake.folder), fake.folder, live=True)["html"]
    assert f'<meta http-equiv="refresh" content="{LIVE_RELOAD_S}">' in html.read_text()


def test_scatter_matrix_for_more_than_two_objectives(make_study):
    devices = ["pi", "laptop"]
    fake = small_study(make_study, devices)
    rec = load_study_record(fake.folder)
    fig = front_figure(rec, pareto_front(rec))
    # accuracy-pi, accuracy-laptop, pi-laptop: every pair once, 6 completed trials in each.
    axes = sorted({(t.xaxis, t.yaxis) for t in fig.data})
    assert len(axes) == 3
    for axis in axes:
        traces = [t for t in fig.data if (t.xaxis, t.yaxis) == axis]
        assert sum(len(t.x) for t in traces) == 6
    float32 = [t for t in fig.data if t.name == "baseline float32"]
    pairs = sorted((list(t.x), list(t.y)) for t in float32)
    # laptop latencies are the doubled ones
    assert pairs == sorted([([8.0], [97.0]), ([16.0], [97.0]), ([16.0], [8.0])])


def test_recipes_are_marked_and_compared_in_the_headline(make_study):
    fake = make_study()
    fake.add(97.0, 8.0, baseline="float32")
    fake.add(96.5, 4.0, recipe="channel_pruning")
    fake.add(96.4, 2.0)
    rec = load_study_record(fake.folder)
    fig = front_figure(rec, pareto_front(rec))
    recipe = next(t for t in fig.data if t.name == "recipe channel_pruning")
    assert recipe.marker.symbol == "triangle-up" and recipe.text == "channel_pruning"
    console = Console(record=True, width=250)
    print_report(rec, console)
    text = console.export_text()
    assert "Against the best one-technique recipe (channel_pruning, trial #1, 4.00 ms): " in text
    # Unconfirmed (no paired rounds): the stored medians' ratio, and said to be unconfirmed.
    assert "2.00× on local by stored medians, unconfirmed" in text
    assert "faster on local (unconfirmed)" in text.splitlines()[0]


def test_print_report_shows_headline_and_front(make_study):
    fake = small_study(make_study)
    console = Console(record=True, width=250)
    print_report(load_study_record(fake.folder), console)
    text = console.export_text()
    assert text.startswith("Best within the metric-drop budget (1 %): 5.33× faster on local")
    assert "-0.90 % accuracy — trial #3" in text and "against float32 trial #0" in text
    assert "1 (float16)" in text and "2 (int8)" in text and "lowrank(rank=0.5)" in text
    assert "96.00" not in text  # the dominated trial is not in the front table
    assert "1 failed trial(s)" in text


def test_markdown_and_csv_formats(make_study):
    fake = small_study(make_study)
    rec = load_study_record(fake.folder)
    md = formatted(rec, "markdown")
    lines = md.splitlines()
    assert lines[0] == "### s1" and lines[2].startswith("Best within the metric-drop budget")
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == 1 + 4  # header + the four front members
    # Front staircase under (96, 8): 0.1*6.5 (#3) + 0.1*6 (int8) + 0.7*4 (float16) = 4.05
    assert "Hypervolume 4.05 against (accuracy 96, latency_local 8)." in md
    assert formatted(rec, "csv") == trials_csv(rec, pareto_front(rec))


def test_headline_when_nothing_is_feasible(make_study):
    fake = make_study()
    fake.add(80.0, 1.0)
    console = Console(record=True, width=200)
    print_report(load_study_record(fake.folder), console)
    assert "no feasible candidate" in console.export_text()
    paths = write_report(load_study_record(fake.folder), fake.folder)
    doc = json.loads(paths["pareto"].read_text())
    assert doc["front"] == [] and doc["hypervolume"] == 0.0 and doc["reference_point"] is None

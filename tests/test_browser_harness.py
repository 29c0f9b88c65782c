"""The browser harness itself: the report tests trust what it counts and records, so each
check here would fail if it counted or recorded wrong."""

from __future__ import annotations

from pathlib import Path

import browser
import numpy as np
import plotly.graph_objects as go
import pytest
from browser import open_page, plot_points, plot_traces


def _two_figure_report(path: Path) -> Path:
    """A self-contained page as the reports write it: plotly.js inline, two graphs, numpy
    arrays (which plotly.py encodes as base64) and plain lists."""
    scatter = go.Figure(
        [
            go.Scatter(x=np.arange(3), y=np.array([0.5, 0.7, 0.9]), name="front"),
            go.Scatter(x=[1, 2, 3, 4, 5], y=[5, 4, 3, 2, 1], name="trials"),
        ]
    )
    splom = go.Figure(
        go.Splom(
            dimensions=[
                {"label": "accuracy", "values": np.linspace(0.1, 0.4, 4)},
                {"label": "latency", "values": [1, 2, 3, 4]},
            ]
        )
    )
    page = scatter.to_html(include_plotlyjs=True, full_html=True, div_id="scatter")
    second = splom.to_html(include_plotlyjs=False, full_html=False, div_id="splom")
    path.write_text(
        page.replace("</body>", f'<section id="tradeoffs">{second}</section></body>'),
        encoding="utf-8",
    )
    return path


def test_plotly_points_counted_per_graph_and_trace(tmp_path: Path) -> None:
    report = _two_figure_report(tmp_path / "report.html")
    with open_page(report) as opened:
        assert plot_points(opened.page) == {"scatter": [3, 5], "splom": [4]}
        traces = plot_traces(opened.page)
        assert traces["scatter"] == [
            {"name": "front", "type": "scatter", "points": 3},
            {"name": "trials", "type": "scatter", "points": 5},
        ]
        assert traces["splom"] == [{"name": None, "type": "splom", "points": 4}]
        # A graph div without an id is keyed by its nearest ancestor's id.
        opened.page.evaluate("document.getElementById('splom').removeAttribute('id')")
        assert opened.plot_points() == {"scatter": [3, 5], "tradeoffs": [4]}
        # Drawn, not just defined: both graphs have their SVG (the splom also its WebGL canvas).
        assert opened.page.locator(".js-plotly-plot .main-svg").count() >= 2
        assert opened.page.locator("#tradeoffs canvas").count() >= 1
        shot = opened.screenshot(tmp_path / "report.png")
        assert opened.console_errors == []
        assert opened.page_errors == []
        assert opened.external_requests == []
        assert opened.requests == [report.resolve().as_uri()]
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_external_request_recorded(tmp_path: Path) -> None:
    page = tmp_path / "external.html"
    page.write_text(
        '<!doctype html><p>report</p><img src="http://127.0.0.1:9/x.png">'
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">',
        encoding="utf-8",
    )
    with open_page(page) as opened:
        assert opened.external_requests == ["http://127.0.0.1:9/x.png"]
        assert opened.requests[0] == page.resolve().as_uri()
        assert "http://127.0.0.1:9/x.png" in opened.requests


def test_console_and_page_errors_recorded(tmp_path: Path) -> None:
    page = tmp_path / "errors.html"
    page.write_text(
        "<!doctype html><p>report</p>"
        '<script>console.warn("only a warning"); console.error("boom");'
        ' throw new Error("bad")</script>',
        encoding="utf-8",
    )
    with open_page(page) as opened:
        assert len(opened.console_errors) == 1
        assert opened.console_errors[0].startswith("boom")
        assert len(opened.page_errors) == 1
        assert "bad" in opened.page_errors[0]
        assert opened.external_requests == []


def test_undrawn_graph_times_out_with_its_id(tmp_path: Path) -> None:
    page = tmp_path / "undrawn.html"
    page.write_text('<div id="never" class="plotly-graph-div"></div>', encoding="utf-8")
    with open_page(page, wait_plots=False) as opened:
        with pytest.raises(TimeoutError, match="never"):
            opened.wait_for_plots(wait_ms=300)


def test_missing_chromium_skips_with_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pytest.skip.Exception, match="install it with `apt-get install chromium`"):
        browser.chromium_path()

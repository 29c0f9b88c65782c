"""Open a self-contained HTML report in headless Chromium and record what a person's browser
would show and fetch: console errors, uncaught exceptions, every request, Plotly's traces.

Chromium is Debian's (/usr/bin/chromium), driven by the ``playwright`` package; Playwright's
own browser downloads are never used (this machine and CI cannot fetch them).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from no_skips import require_program
from playwright.sync_api import ConsoleMessage, Page, Request, WebSocket, sync_playwright
from playwright.sync_api import Error as PlaywrightError

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_INSTALL = "apt-get install chromium"

# --no-sandbox: tests run as root, where Chromium refuses its sandbox. The rest keep the browser
# from reaching the network on its own (updates, sync, QUIC probes), so every request recorded is
# the page's. --disable-dev-shm-usage: containers often have a tiny /dev/shm, which crashes
# Chromium's renderer; /tmp works everywhere.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# Schemes a self-contained report may load from; anything else left the machine (or tried to).
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

DEFAULT_WAIT_MS = 60_000

# The ids of the Plotly graph divs not yet drawn (none: all drawn). A div written by plotly.py's
# to_html has class plotly-graph-div before Plotly.newPlot runs and js-plotly-plot after;
# _fullLayout appears when newPlot starts, and _replotting is false once it has drawn.
_UNDRAWN_PLOTS_JS = """() => Array.from(document.querySelectorAll(
        '.plotly-graph-div, .js-plotly-plot'))
    .filter(gd => !(gd._fullLayout && gd._fullLayout._replotting !== true
                    && gd.querySelector('.main-svg')))
    .map(gd => gd.id || '(no id)')"""

# Name, type and point count of every trace of every Plotly graph, keyed by the graph div's id
# (or its nearest ancestor's id). Counts come from gd.data (what the report wrote), with numpy
# arrays that plotly.py encoded as {dtype, bdata} decoded by their byte length.
_TRACES_JS = """() => {
    const SIZES = {i1: 1, u1: 1, u1c: 1, i2: 2, u2: 2, i4: 4, u4: 4, f4: 4, f8: 8};
    const count = v => {
        if (v === undefined || v === null) return null;
        if (Array.isArray(v) || ArrayBuffer.isView(v)) return v.length;
        if (typeof v === 'object' && typeof v.bdata === 'string') {
            if (v.shape !== undefined) return Number(String(v.shape).split(',')[0]);
            if (ArrayBuffer.isView(v._inputArray)) return v._inputArray.length;
            const bytes = Math.floor(v.bdata.replace(/=+$/, '').length * 3 / 4);
            return Math.floor(bytes / (SIZES[v.dtype] || 8));
        }
        return null;
    };
    const first = (...vs) => {
        for (const v of vs) { const n = count(v); if (n !== null) return n; }
        return 0;
    };
    const points = t => {
        const type = t.type || 'scatter';
        if (type === 'splom') {
            const dims = t.dimensions || [];
            return dims.length ? first(dims[0].values) : 0;
        }
        if (type === 'pie' || type === 'funnelarea') return first(t.values, t.labels);
        if (type.startsWith('scattergeo') || type.startsWith('scattermap')) {
            return first(t.lat, t.lon, t.locations);
        }
        if (type.startsWith('scatterpolar') || type === 'barpolar') return first(t.r, t.theta);
        if (type === 'scatterternary') return first(t.a, t.b, t.c);
        return first(t.x, t.y, t.z, t.values);
    };
    const key = (gd, index, seen) => {
        let node = gd;
        while (node && !node.id) node = node.parentElement;
        let name = node ? node.id : 'plot' + index;
        if (seen.has(name)) {
            let n = 2;
            while (seen.has(name + '#' + n)) n += 1;
            name = name + '#' + n;
        }
        seen.add(name);
        return name;
    };
    const result = {};
    const seen = new Set();
    Array.from(document.querySelectorAll('.js-plotly-plot')).forEach((gd, index) => {
        result[key(gd, index, seen)] = (gd.data || []).map(t => ({
            name: t.name === undefined ? null : String(t.name),
            type: t.type || 'scatter',
            points: points(t),
        }));
    });
    return result;
}"""


def chromium_path() -> str:
    """Debian's Chromium, which the report tests need. Without it they skip with the line that
    installs it (never `playwright install`); CI installs it and fails on any skip (no_skips)."""
    return require_program(CHROMIUM, CHROMIUM_INSTALL)


def is_external(url: str) -> bool:
    """Whether a URL leaves the page's own file (a self-contained report loads none)."""
    return not url.lower().startswith(LOCAL_SCHEMES)


@dataclass
class BrowserPage:
    """An open page and what it did so far; the lists keep growing while the page is open."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)

    def screenshot(self, path: str | Path, full_page: bool = True) -> Path:
        """Save a PNG of the page, so a test failure (or a person) can look at it."""
        path = Path(path)
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def plot_points(self) -> dict[str, list[int]]:
        """Point counts of this page's Plotly traces (see the module's ``plot_points``)."""
        return plot_points(self.page)

    def plot_traces(self) -> dict[str, list[dict[str, Any]]]:
        """Name, type, points of this page's Plotly traces (see ``plot_traces``)."""
        return plot_traces(self.page)

    def wait_for_plots(self, wait_ms: int = DEFAULT_WAIT_MS) -> None:
        """Wait until every Plotly graph has drawn (again, e.g. after a click re-plots)."""
        wait_for_plots(self.page, wait_ms=wait_ms, errors=self.page_errors)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            location = message.location or {}
            where = location.get("url", "")
            if where:
                where = f" ({where}:{location.get('lineNumber', '?')})"
            self.console_errors.append(message.text + where)

    def _on_page_error(self, error: PlaywrightError) -> None:
        self.page_errors.append(f"{error.name or 'Error'}: {error.message}")

    def _on_crash(self, page: Page) -> None:
        self.page_errors.append("the page's renderer crashed")

    def _on_request(self, request: Request) -> None:
        self._record(request.url)

    def _on_websocket(self, websocket: WebSocket) -> None:
        self._record(websocket.url)

    def _record(self, url: str) -> None:
        self.requests.append(url)
        if is_external(url):
            self.external_requests.append(url)


def _url(path_or_url: str | Path) -> str:
    if isinstance(path_or_url, Path):
        return path_or_url.resolve().as_uri()
    if "://" in path_or_url or path_or_url.startswith(("data:", "about:")):
        return path_or_url
    return Path(path_or_url).resolve().as_uri()


@contextmanager
def open_page(
    path_or_url: str | Path,
    *,
    wait_ms: int = DEFAULT_WAIT_MS,
    wait_plots: bool = True,
    block_external: bool = True,
    viewport: tuple[int, int] = (1280, 900),
) -> Iterator[BrowserPage]:
    """Open a report (a Path or a file name becomes a file:// URL) in a fresh headless
    Chromium with its own temporary profile, and yield it once loaded and its Plotly graphs
    drawn. ``wait_ms`` bounds each wait (launch, load, plots). External requests are recorded
    and, with ``block_external``, aborted, so a report that reaches for a CDN fails its test at
    once instead of waiting on a network the tests do not have. The browser is always closed."""
    executable = chromium_path()
    url = _url(path_or_url)
    with (
        tempfile.TemporaryDirectory(
            prefix="devicefit-chromium-", ignore_cleanup_errors=True
        ) as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=wait_ms,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        try:
            context.set_default_timeout(wait_ms)
            context.set_default_navigation_timeout(wait_ms)
            page = context.pages[0] if context.pages else context.new_page()
            recorded = BrowserPage(page=page)
            page.on("console", recorded._on_console)
            page.on("pageerror", recorded._on_page_error)
            page.on("crash", recorded._on_crash)
            page.on("websocket", recorded._on_websocket)
            # On the context, not the page: workers' and popups' requests count too.
            context.on("request", recorded._on_request)
            if block_external:
                context.route(is_external, lambda route: route.abort("blockedbyclient"))
            page.goto(url, wait_until="load", timeout=wait_ms)
            if wait_plots:
                wait_for_plots(page, wait_ms=wait_ms, errors=recorded.page_errors)
            yield recorded
        finally:
            context.close()


def wait_for_plots(
    page: Page, *, wait_ms: int = DEFAULT_WAIT_MS, errors: Sequence[str] = ()
) -> None:
    """Wait until every Plotly graph div has drawn, then for two animation frames so the
    drawing is on screen; a graph that never draws raises with its id and the page's errors."""
    try:
        page.wait_for_function(
            f"() => ({_UNDRAWN_PLOTS_JS})().length === 0", timeout=wait_ms, polling=50
        )
    except PlaywrightError as error:
        undrawn = page.evaluate(_UNDRAWN_PLOTS_JS)
        raise TimeoutError(
            f"Plotly graphs not drawn after {wait_ms} ms: {undrawn}; page errors: {list(errors)}"
        ) from error
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def plot_traces(page: Page) -> dict[str, list[dict[str, Any]]]:
    """For every Plotly graph, keyed by its div's id (or its nearest ancestor's id), each
    trace's ``name`` (None if unnamed), ``type`` and ``points``, in trace order, zero-point
    traces included; so a test can check e.g. that the trace named 'front' has 3 points."""
    return page.evaluate(_TRACES_JS)


def plot_points(page: Page) -> dict[str, list[int]]:
    """For every Plotly graph, keyed as in ``plot_traces``, the point count of each trace in
    trace order (scatter: x or y; splom: the first dimension's values; bar: x or y), leaving
    out traces with no points."""
    return {
        key: [trace["points"] for trace in traces if trace["points"] > 0]
        for key, traces in plot_traces(page).items()
    }

"""A pytest plugin for CI: with ``DEVICEFIT_NO_SKIP`` set, a skipped test fails instead.

Tests that need a system program pip cannot install (Chromium, openssl) skip on a machine
without it, saying how to install it; CI installs them all (.ci/run) and sets the variable, so
there a skip means a test that was expected to run did not.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

ENV = "DEVICEFIT_NO_SKIP"


def require_program(path: str, install: str) -> str:
    """``path`` if it is an executable file (or a program on the PATH), else skip the test
    with the line that installs it."""
    import shutil

    found = path if os.path.isfile(path) and os.access(path, os.X_OK) else shutil.which(path)
    if not found:
        pytest.skip(f"{path} not found; install it with `{install}`")
    return found


def _as_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    report.outcome = "failed"
    report.longrepr = f"skipped, but {ENV} is set (every test must run here): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator:
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(ENV) and report.skipped and not hasattr(report, "wasxfail"):
        _as_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator:
    """A whole module skipped (``pytest.importorskip``, ``allow_module_level``) counts too."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(ENV) and report.skipped:
        _as_failure(report)

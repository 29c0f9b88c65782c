"""A pytest plugin: tests marked ``slow`` (whole searches, minutes each) get a longer hang
guard than the suite's 600 s (pyproject.toml), unless they set their own with
``pytest.mark.timeout``. The slowest takes about five minutes on a quiet 2-core machine;
on a loaded one, twice that is not a hang. A module of its own, so tests can import the
value (``from conftest import`` finds whichever conftest.py was imported first).
"""

from __future__ import annotations

import pytest

SLOW_TIMEOUT_S = 1200


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))

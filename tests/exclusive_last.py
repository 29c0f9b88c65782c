"""A pytest plugin: the tests marked ``exclusive`` (they compare latencies, so they run with
nothing else on the machine) run last.

Each exclusive test waits until the other worker's running test ends (conftest.py's lock).
Scattered through the run, every one of them waited behind a long test of the other worker
(a Ray search, say) while its own worker idled: on 2 cores that cost a quarter of an hour.
At the end of the collection they are the last tests pytest-xdist hands out (it sends
multi-test groups first, then single tests in collection order), so they mostly wait for
each other, and conftest.py keeps the lock from one to the next on a worker that runs two
in a row. Not an xdist group: pytest-xdist sends larger groups first, which put them at
the start of the run, beside a Ray cluster that was still starting.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    exclusive = [item for item in items if item.get_closest_marker("exclusive")]
    chosen = set(exclusive)
    items[:] = [item for item in items if item not in chosen] + exclusive

"""A pytest plugin: the tests marked ``exclusive`` (they compare latencies, so they run with
nothing else on the machine) run last, one after another on one worker.

Each exclusive test waits until the other worker's running test ends (conftest.py's lock).
Scattered through the run, every one of them waited behind a long test of the other worker
(a Ray search, say) while its own worker idled: on 2 cores that cost a quarter of an hour.
Together, at the end, they wait once: conftest.py keeps the lock from one to the next.
"""

from __future__ import annotations

import pytest

GROUP = "exclusive"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist names the groups in the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    exclusive = [item for item in items if item.get_closest_marker("exclusive")]
    if not exclusive:
        return
    for item in exclusive:
        item.add_marker(pytest.mark.xdist_group(GROUP))
    chosen = set(exclusive)
    items[:] = [item for item in items if item not in chosen] + exclusive

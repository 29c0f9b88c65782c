"""The suite's hang guards (pytest-timeout): whole searches get longer than unit tests."""

from __future__ import annotations

import pytest
from slow_hang_guard import SLOW_TIMEOUT_S


@pytest.mark.slow
def test_a_slow_test_gets_the_longer_hang_guard(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("timeout")
    assert marker is not None and marker.args == (SLOW_TIMEOUT_S,)
    assert SLOW_TIMEOUT_S > float(request.config.getini("timeout"))


def test_other_tests_keep_the_suite_s_guard(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("timeout") is None
    assert float(request.config.getini("timeout")) == 600


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_slow_test_s_own_guard_is_kept(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("timeout")
    assert marker is not None and marker.args == (1500,)

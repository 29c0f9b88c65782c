"""Fixtures for the technique tests; the models themselves are in spaces_zoo.py."""

from __future__ import annotations

import pytest
from spaces_zoo import ZOO, ZooModel, build_zoo_model


@pytest.fixture(scope="module", params=sorted(ZOO))
def zoo_model(request: pytest.FixtureRequest) -> ZooModel:
    """Built once per test module; tests must not modify it (the conformance suite checks)."""
    return build_zoo_model(request.param)

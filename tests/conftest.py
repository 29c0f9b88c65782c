"""Shared fixtures. Built-in tasks are trained once per test session into one cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devicefit.quiet import silence_tensorflow

silence_tensorflow()


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # CI sets DEVICEFIT_CACHE to a fresh folder; a developer's run keeps its own cache.
    if "DEVICEFIT_CACHE" not in os.environ:
        os.environ["DEVICEFIT_CACHE"] = str(tmp_path_factory.mktemp("devicefit-cache"))


@pytest.fixture()
def tiny_tflite() -> bytes:
    """A real, small float32 TFLite file."""
    import keras

    from devicefit.spaces.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    return to_tflite(model, (1, 16, 16, 3))


@pytest.fixture()
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture()
def start_agent():  # noqa: ANN201 - a factory fixture
    """Start real agent servers on loopback (``start_agent(token=..., ...)``); all are
    stopped after the test."""
    from agent_helpers import start_agent_server, stop_agent_server

    servers = []

    def start(**options):  # noqa: ANN003, ANN202
        servers.append(start_agent_server(**options))
        return servers[-1]

    yield start
    for server in servers:
        stop_agent_server(server)


@pytest.fixture(scope="session")
def ray_cluster():  # noqa: ANN201
    """A real two-node Ray cluster on loopback, shared by the session: a head node and a
    worker node carrying the custom resource ``pi4`` (a device node), one CPU each.
    The test process is connected to it. Yields (address, pi4 node id)."""
    from ray_helpers import start_cluster

    cluster = start_cluster([{"pi4": 1}])
    try:
        import ray

        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        node = next(n["NodeID"] for n in ray.nodes() if n["Resources"].get("pi4"))
        yield cluster.address, node
    finally:
        try:
            import ray

            ray.shutdown()
        finally:
            cluster.stop()

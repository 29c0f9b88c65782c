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
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A real two-node Ray cluster on loopback: a head node, and a worker node carrying
    the custom resource ``pi4`` (a device node). Started with ``ray start`` and
    stopped by ``ray stop`` at the end of the session; yields (address, pi4 node id)."""
    import json
    import socket
    import subprocess
    import sys

    ray_cli = str(Path(sys.executable).parent / "ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    temp = tmp_path_factory.mktemp("ray")
    subprocess.run(
        [ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false"]
        + [f"--temp-dir={temp}", *common],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [ray_cli, "start", f"--address={address}", "--resources", json.dumps({"pi4": 1})]
            + common,
            check=True,
            capture_output=True,
        )
        import ray

        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        node = next(n["NodeID"] for n in ray.nodes() if n["Resources"].get("pi4"))
        yield address, node
    finally:
        try:
            import ray

            ray.shutdown()
        finally:
            subprocess.run([ray_cli, "stop", "--force"], capture_output=True)

"""Shared fixtures. Built-in tasks are trained once per test session into one cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from devicefit.quiet import silence_tensorflow

silence_tensorflow()

# no_skips: with DEVICEFIT_NO_SKIP set (CI), a skipped test fails. pytester: tests of plugins.
# exclusive_last: the tests that run alone run last, together, on one worker.
# slow_hang_guard: tests marked slow get a longer pytest-timeout than the suite's.
pytest_plugins = ["no_skips", "pytester", "exclusive_last", "slow_hang_guard"]

# A folder the test workers of one run share (the CPU lock; the task cache unless CI names
# one): made by the controlling process before pytest-xdist starts the workers, which
# inherit the variable, and removed at the end of the run.
RUN_DIR = "DEVICEFIT_TEST_RUN_DIR"
# Servers the fixtures started, for the run's summary: each worker's lines reach the
# controlling process in its workeroutput.
_SERVER_NOTES: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        import tempfile

        os.environ[RUN_DIR] = tempfile.mkdtemp(prefix="devicefit-tests-")
        os.environ.setdefault("DEVICEFIT_CACHE", os.path.join(os.environ[RUN_DIR], "cache"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and os.environ.get(RUN_DIR):
        import shutil

        shutil.rmtree(os.environ.pop(RUN_DIR), ignore_errors=True)


def note_server(line: str) -> None:
    """A line for the run's summary (and for -s output) about a server a fixture started."""
    print(line)
    _SERVER_NOTES.append(line)


_GROUP_LOST = pytest.StashKey[str]()  # why a grouped test cannot run as grouped


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook has named the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of an ``xdist_group`` must stay on one worker (one Ray cluster at a time, each
    module fixture built once); under a pytest that pytest-xdist cannot rename items in, they
    would not, and each of them fails with the reason instead (pytest_runtest_setup)."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
            item.stash[_GROUP_LOST] = (
                f"pytest-xdist's --dist loadgroup has no effect under pytest "
                f"{pytest.__version__}: install the pytest that pyproject.toml asks for"
            )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _GROUP_LOST in item.stash:
        pytest.fail(item.stash[_GROUP_LOST], pytrace=False)


@pytest.hookimpl(trylast=True)  # after the session's fixtures are torn down
def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["devicefit_servers"] = list(_SERVER_NOTES)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_testnodedown(node: object, error: object) -> None:
    _SERVER_NOTES.extend(getattr(node, "workeroutput", {}).get("devicefit_servers", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SERVER_NOTES and not hasattr(terminalreporter.config, "workerinput"):
        terminalreporter.section("servers the tests started")
        for line in _SERVER_NOTES:
            terminalreporter.line(line)


# The exclusive lock kept from one exclusive test to the next on this worker (they run
# together at the end: exclusive_last.py), so the other worker cannot start a test between
# them that the next one would have to wait for.
_HELD: list[IO[str]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Tests run on two workers (pytest-xdist) but a test marked ``exclusive`` (one that
    compares latencies) runs alone: it takes the machine-wide lock exclusively, every
    other test takes it shared. While an exclusive test waits, no new test starts. Held
    around the whole protocol, so the other worker's fixture set-ups (training a task,
    starting a cluster) wait too; kept when the next test here is exclusive as well."""
    exclusive = item.get_closest_marker("exclusive") is not None
    handle = _HELD.pop() if exclusive and _HELD else _locked(exclusive)
    try:
        yield
    finally:
        if exclusive and nextitem is not None and nextitem.get_closest_marker("exclusive"):
            _HELD.append(handle)
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def _locked(exclusive: bool) -> IO[str]:
    """The run's lock file, locked exclusively or shared (after any exclusive test waiting)."""
    import fcntl
    import time

    root = Path(os.environ[RUN_DIR])
    handle = open(root / "cpu.lock", "a")  # closed when the test is done (or the last held)
    if exclusive:
        pending = root / f"exclusive-pending-{os.getpid()}"
        pending.touch()
        fcntl.flock(handle, fcntl.LOCK_EX)
        pending.unlink(missing_ok=True)
    else:
        while any(root.glob("exclusive-pending-*")):
            time.sleep(0.2)
        fcntl.flock(handle, fcntl.LOCK_SH)
    return handle


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
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server's URL: the one ``DEVICEFIT_TEST_POSTGRES`` names, else one this
    fixture starts in a temporary folder on a free loopback port and stops at the end of the
    session (tests/postgres_server.py). Each test worker that needs it starts its own."""
    from postgres_server import postgres_for_tests

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with postgres_for_tests(lambda line: note_server(f"[{worker}] {line}")) as url:
        yield url


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

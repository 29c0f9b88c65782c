"""The study's PostgreSQL storage (a real server, from the ``postgres_url`` fixture) briefly
unreachable: the driver retries with back-off and goes on; unreachable for good: it
stops cleanly and keeps every trial already told. The outage is made by a TCP relay
between the driver and the server that the test cuts and restores."""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console
from sqlalchemy.engine import make_url
from test_driver_devices import InstantExecutor, SlowRemoteDevice

from devicefit.config import StudyConfig
from devicefit.evaluators.base import BenchmarkSpec, Measurement
from devicefit.evaluators.metrics import get_metric
from devicefit.search import storage_retries, storages
from devicefit.search.driver import Driver
from devicefit.search.run import build_space
from devicefit.search.study import create_study
from devicefit.tasks.base import TaskSpec


class Relay:
    """Forwards 127.0.0.1:<port> to the PostgreSQL server at ``direct`` (a URL); ``url`` is
    the same database through the relay. ``cut()`` drops every connection and refuses new
    ones until ``restore()``."""

    def __init__(self, direct: str) -> None:
        self.direct = direct
        server = make_url(direct)
        # The relay needs the server's TCP address; a URL without one cannot be relayed.
        assert server.host and server.port, f"{direct}: give the host and the port"
        self.target = (server.host, server.port)
        self.port = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        listener.listen()
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    @property
    def url(self) -> str:
        relayed = make_url(self.direct).set(host="127.0.0.1", port=self.port)
        return relayed.render_as_string(hide_password=False)

    def cut(self) -> None:
        with self._lock:
            self._drop([s for s in [self._listener, *self._sockets] if s is not None])
            self._sockets.clear()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                if self._listener is not listener:  # cut while this one was being made
                    self._drop([client, server])
                    return
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @classmethod
    def _pump(cls, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        cls._drop([source, sink])

    @staticmethod
    def _drop(sockets: list[socket.socket]) -> None:
        """Shut down, then close: a close alone wakes neither the other pump's recv nor
        the server, whose session would live on holding its locks."""
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def _driver(
    tmp_path: Path, url: str, trials: int, device: SlowRemoteDevice | None = None
) -> tuple[Driver, io.StringIO]:
    name = f"outage-{tmp_path.name}-{int(time.time() * 1000)}"
    config = StudyConfig(
        task="digits",
        trials=trials,
        storage=url,
        devices=("pi=http://10.9.9.9:8765",),
        techniques=("quantization",),
        study=name,
    )
    metric = get_metric("accuracy")
    study = create_study(config, tmp_path / name, metric, 1.0, "digits", [], None)
    log = io.StringIO()
    driver = Driver(
        study,
        config,
        tmp_path / name,
        build_space(config),
        metric,
        TaskSpec("digits"),
        InstantExecutor(),
        {"pi": device or SlowRemoteDevice()},
        Console(file=log, width=200),
    )
    return driver, log


@pytest.fixture()
def relay(postgres_url: str) -> Relay:
    relay = Relay(postgres_url)
    yield relay
    relay.cut()


class CutsMidSearch(SlowRemoteDevice):
    """Cuts the storage as it finishes measuring the third candidate and restores it once
    the driver has run into the outage (its log says so), 60 s at the latest: the outage
    lands mid-search, just before that trial is told. A fixed-length outage could pass
    unseen on a loaded machine, while the driver's one thread was busy elsewhere (reading
    a file's kernels imports TensorFlow's schema, seconds long)."""

    def __init__(self, relay: Relay) -> None:
        super().__init__()
        self.relay = relay
        self.finished = 0
        self.log: io.StringIO | None = None  # the driver's console, set by the test

    def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
        measured = super().measure(tflite, spec)
        with self._lock:
            self.finished += 1
            cut = self.finished == 3
        if cut:
            self.relay.cut()
            threading.Thread(target=self._restore_when_noticed, daemon=True).start()
        return measured

    def _restore_when_noticed(self) -> None:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            if self.log is not None and "storage unreachable" in self.log.getvalue():
                break
            time.sleep(0.05)
        self.relay.restore()


def test_a_brief_outage_is_retried_and_the_study_completes(tmp_path: Path, relay: Relay) -> None:
    device = CutsMidSearch(relay)
    driver, log = _driver(tmp_path, relay.url, 8, device)
    device.log = log
    try:
        assert driver.run() == 0, log.getvalue()
        assert "storage unreachable" in log.getvalue()
        assert len(driver.study.get_trials(states=(TrialState.COMPLETE,))) == 8
    finally:
        _delete(driver.study.study_name, relay.direct)


def test_a_lasting_outage_stops_cleanly_keeping_what_was_told(
    tmp_path: Path, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_retries, "STORAGE_RETRIES", 2)
    driver, log = _driver(tmp_path, relay.url, 50)
    told: list[int] = []
    # The cut comes once the driver has told a trial (60 s at the latest), not at a fixed
    # time: on a loaded machine the first trial can take longer than any fixed delay.
    threading.Thread(target=_cut_after_a_tell, args=(driver, relay, told), daemon=True).start()
    began = time.monotonic()
    try:
        assert driver.run() == 1
        assert time.monotonic() - began < 30
        assert "stayed unreachable" in log.getvalue() and "devicefit resume" in log.getvalue()
        after = optuna.load_study(study_name=driver.study.study_name, storage=relay.direct)
        complete = {t.number for t in after.get_trials(states=(TrialState.COMPLETE,))}
        assert told and set(told) <= complete  # nothing told before the outage was lost
    finally:
        _delete(driver.study.study_name, relay.direct)


def _delete(name: str, url: str) -> None:
    """Remove the test's study, without ever hanging the suite on clean-up (a study
    left behind in the test database is harmless: names are unique)."""
    worker = threading.Thread(
        target=lambda: optuna.delete_study(study_name=name, storage=url), daemon=True
    )
    worker.start()
    worker.join(timeout=30)


def _cut_after_a_tell(driver: Driver, relay: Relay, told: list[int]) -> None:
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        done = _complete_numbers(driver, relay.direct)
        if done:
            told.extend(done)
            break
        time.sleep(0.2)
    relay.cut()


def _complete_numbers(driver: Driver, url: str) -> list[int]:
    study = optuna.load_study(study_name=driver.study.study_name, storage=url)
    return [t.number for t in study.get_trials(states=(TrialState.COMPLETE,))]


def test_a_tell_that_committed_before_the_connection_dropped_is_not_told_twice(
    tmp_path: Path,
) -> None:
    """The outage lands between the storage's commit and its answer: the retried step finds
    its trial already finished. That trial counts as told; nothing fails or runs twice."""
    from sqlalchemy.exc import OperationalError

    driver, log = _driver(tmp_path, f"sqlite:///{tmp_path / 'study.db'}", 6)
    real_tell, dropped = driver.study.tell, []

    def tell(trial: optuna.Trial, *args: object, **kwargs: object) -> object:
        result = real_tell(trial, *args, **kwargs)
        if not dropped and trial.number == 2:  # a searched trial, after the baselines
            dropped.append(trial.number)
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost"))
        return result

    driver.study.tell = tell  # type: ignore[method-assign]
    assert driver.run() == 0, log.getvalue()
    assert dropped == [2] and "storage unreachable" in log.getvalue()
    trials = driver.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert driver.told == 6


def test_a_parameter_that_committed_before_the_connection_dropped_is_not_drawn_again(
    tmp_path: Path,
) -> None:
    """The outage lands between a parameter's commit and its answer: the retried sampling
    keeps the stored value, so each trial's plan is the one its parameters say."""
    from optuna.trial import FixedTrial
    from sqlalchemy.exc import OperationalError

    driver, log = _driver(tmp_path, f"sqlite:///{tmp_path / 'study.db'}", 6)
    storage = driver.study._storage
    real_set, calls = storage.set_trial_param, []

    def set_trial_param(trial_id: int, name: str, *args: object) -> None:
        real_set(trial_id, name, *args)
        calls.append((trial_id, name))
        if len(calls) == 1:
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost"))

    storage.set_trial_param = set_trial_param  # type: ignore[method-assign]
    assert driver.run() == 0, log.getvalue()
    assert calls and "storage unreachable" in log.getvalue()
    assert len(calls) == len(set(calls))  # no parameter of any trial set twice
    space = build_space(driver.config)
    for trial in driver.study.get_trials(states=(TrialState.COMPLETE,)):
        if trial.params:
            said = space.sample(FixedTrial(trial.params), leave_out=False).to_dict()
            assert trial.user_attrs["plan"] == said


def test_a_dropped_connection_is_an_outage_whatever_the_driver_calls_it() -> None:
    from sqlalchemy.exc import DatabaseError, IntegrityError

    dropped = DatabaseError("COMMIT", {}, Exception("SSL SYSCALL error: EOF detected"))
    dropped.connection_invalidated = True
    assert not storage_retries.is_outage(optuna.exceptions.StorageInternalError("bad data"))
    wrapped = optuna.exceptions.StorageInternalError("commit failed")
    wrapped.__cause__ = dropped
    assert storage_retries.is_outage(wrapped)
    assert not storage_retries.is_outage(IntegrityError("INSERT", {}, Exception("duplicate key")))


def test_a_query_stuck_behind_a_vanished_session_is_cancelled_as_an_outage(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that took the trial's row lock and then went quiet (its client gone, the
    server not told) would hold the driver's next write forever; the storage's session
    bounds cancel that write, and the driver counts it as an outage (so it retries)."""
    import psycopg

    monkeypatch.setattr(storages, "LOCK_TIMEOUT_S", 1)
    name = f"stuck-{int(time.time() * 1000)}"
    study = optuna.create_study(study_name=name, storage=storages.open_storage(postgres_url))
    trial = study.ask()
    raw = make_url(postgres_url).set(drivername="postgresql")
    stuck = psycopg.connect(raw.render_as_string(hide_password=False))
    try:
        # The vanished session: inside a transaction, holding the trial's row.
        stuck.execute("SELECT * FROM trials WHERE trial_id = %s FOR UPDATE", (trial._trial_id,))
        began = time.monotonic()
        with pytest.raises(Exception) as caught:
            study.tell(trial, 1.0)
        assert time.monotonic() - began >= 0.9  # it waited for the lock, then was cancelled
        assert storage_retries.is_outage(caught.value), repr(caught.value)
        assert "lock timeout" in _chain(caught.value)
        stuck.close()
        # Once the lock is gone, the same storage goes on: the trial is told.
        study.tell(trial, 1.0)
        assert study.trials[0].state == TrialState.COMPLETE
    finally:
        stuck.close()
        _delete(name, postgres_url)


def test_a_session_idle_in_a_transaction_is_ended_by_the_server(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other half: the driver's own sessions carry the bound that ends a session left
    idle inside a transaction, so one whose client vanished releases its locks."""
    from sqlalchemy import create_engine, text

    monkeypatch.setattr(storages, "IDLE_IN_TRANSACTION_S", 1)
    engine = storages.open_storage(postgres_url).engine
    with engine.connect() as connection:
        assert connection.execute(text("SHOW lock_timeout")).scalar() == "1min"
        connection.execute(text("SELECT 1"))  # a transaction is open from here on
        time.sleep(2.5)
        with pytest.raises(Exception, match="idle-in-transaction") as caught:
            connection.execute(text("SELECT 1"))
        assert storage_retries.is_outage(caught.value), repr(caught.value)
    # Without the bound (a plain engine), the same idle session lives on.
    plain = create_engine(make_url(postgres_url))
    with plain.connect() as connection:
        connection.execute(text("SELECT 1"))
        time.sleep(2.5)
        assert connection.execute(text("SELECT 1")).scalar() == 1
    plain.dispose()


def test_the_users_own_session_options_are_kept(postgres_url: str) -> None:
    """The bounds are added to a session, never in place of what the URL asks for."""
    from sqlalchemy import text

    asked = make_url(postgres_url).update_query_dict({"options": "-c statement_timeout=42s"})
    engine = storages.open_storage(asked.render_as_string(hide_password=False)).engine
    with engine.connect() as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar() == "42s"
        assert connection.execute(text("SHOW lock_timeout")).scalar() == "1min"
    engine.dispose()


def _chain(exc: BaseException | None) -> str:
    """The messages of ``exc`` and of what caused it (Optuna wraps a failed commit)."""
    text = []
    while exc is not None:
        text.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(text)

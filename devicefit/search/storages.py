"""Optuna storages from a ``--storage`` URL (or ``$DEVICEFIT_STORAGE``).

Any Optuna RDB URL (``sqlite:///...``, ``postgresql://user@host/db``, ``mysql://...``)
and ``journal:PATH`` for Optuna's journal file. Optuna's storage classes are used
as they are; only their options are chosen here.
"""

from __future__ import annotations

from typing import Any

from devicefit.errors import UsageError

JOURNAL = "journal:"

# Server-side bounds on every session of the driver, in seconds. Keepalives cannot see a
# peer that is alive but stuck: a backend whose client vanished mid-transaction (a proxy or
# NAT that dropped one half of the connection) keeps its row locks, and the next query that
# needs them would wait forever. With these, such a backend is ended and a query that
# still waits is cancelled; a cancelled query is an OperationalError, which the driver
# treats as an outage and retries. Optuna's queries take milliseconds and it commits at
# once, so the bounds are generous.
STATEMENT_TIMEOUT_S = 120
LOCK_TIMEOUT_S = 60
IDLE_IN_TRANSACTION_S = 60


def postgres_session_options() -> str:
    """libpq ``options`` that set the bounds above on a PostgreSQL session."""
    return (
        f"-c statement_timeout={STATEMENT_TIMEOUT_S}s -c lock_timeout={LOCK_TIMEOUT_S}s "
        f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_S}s"
    )


def open_storage(url: str) -> Any:
    """The storage object (or URL) to hand to ``optuna.create_study``/``load_study``."""
    import optuna

    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        path = url[len(JOURNAL) :].removeprefix("//")
        if not path:
            raise UsageError(f"--storage {url!r}: expected journal:PATH")
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        except OSError as exc:
            raise UsageError(f"--storage {url!r}: {exc.strerror}") from None
    if "://" not in url:
        raise UsageError(
            f"--storage {url!r}: expected an Optuna storage URL (sqlite:///PATH, "
            "postgresql://USER@HOST/DB, mysql://...) or journal:PATH"
        )
    if url.startswith("sqlite:"):
        return url  # one writer (the driver): Optuna's defaults fit
    try:
        # pre-ping: a connection the server dropped (restart, network blip) is replaced
        # instead of failing the next query.
        engine: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("postgresql"):
            # Never wait forever on a server that went away: bounded connects, and
            # TCP keepalives that notice a dead peer on an open connection.
            engine["connect_args"] = {
                "connect_timeout": 10,
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                "options": postgres_session_options(),
            }
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except Exception as exc:  # sqlalchemy's own errors: bad driver, host, credentials
        raise UsageError(f"--storage: cannot open {url}: {type(exc).__name__}: {exc}") from None

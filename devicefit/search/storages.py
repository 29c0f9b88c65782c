"""Optuna storages from a ``--storage`` URL (or ``$DEVICEFIT_STORAGE``).

Any Optuna RDB URL (``sqlite:///...``, ``postgresql://user@host/db``, ``mysql://...``)
and ``journal:PATH`` for Optuna's journal file. Optuna's storage classes are used
as they are; only their options are chosen here.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from devicefit.errors import UsageError

JOURNAL = "journal:"

# Server-side bounds on every session of the driver, in seconds. Keepalives cannot see a
# peer that is alive but stuck: a backend whose client vanished mid-transaction (a proxy or
# NAT that dropped one half of the connection) keeps its row locks, and the next query that
# needs them would wait forever. With these, such a backend is ended, and a query that
# waits on a lock longer is cancelled; a cancelled query is an OperationalError, which the
# driver treats as an outage and retries. Optuna commits at once and its row locks are held
# for milliseconds, so the bounds are generous. (No statement timeout: a slow query, such
# as loading a large study over a slow link, would fail the same way on every retry.)
ENV_STORAGE = "DEVICEFIT_STORAGE"  # the storage when no --storage is given


def given_storage(flag: str | None) -> str | None:
    """The storage URL a command was given: ``--storage``, else ``$DEVICEFIT_STORAGE``.

    Args:
        flag: the ``--storage`` flag's value, if any.

    Returns:
        The URL, or None (the study's own: its folder's study.db or the stored URL).
    """
    return flag or os.environ.get(ENV_STORAGE) or None


LOCK_TIMEOUT_S = 60
IDLE_IN_TRANSACTION_S = 60


def bound_sessions(engine: Any) -> None:
    """Set the bounds above on every new session of ``engine`` (a PostgreSQL one).

    With ``SET`` after connecting rather than libpq's ``options``: that would replace a
    user's own ``options`` and ``PGOPTIONS``, and poolers such as PgBouncer refuse unknown
    startup parameters. A server that refuses the ``SET`` keeps its defaults.

    Args:
        engine: the SQLAlchemy engine of an RDBStorage; its open connections are dropped.
    """
    from sqlalchemy import event

    event.listen(engine, "connect", _set_bounds)
    engine.dispose()  # the session Optuna opened while making the storage has none


def _set_bounds(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
        cursor.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_S}s'")
        connection.commit()
    except Exception as exc:  # noqa: BLE001 - without them the driver still works
        connection.rollback()
        warnings.warn(f"PostgreSQL session limits not set: {exc}", stacklevel=1)
    finally:
        cursor.close()


def open_storage(url: str) -> Any:
    """The storage object (or URL) to hand to ``optuna.create_study``/``load_study``.

    Args:
        url: an Optuna RDB URL or ``journal:PATH``.

    Returns:
        A JournalStorage or RDBStorage; a sqlite URL as it is (Optuna's defaults fit).

    Raises:
        UsageError: the URL is malformed, or the storage cannot be opened."""
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
            }
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine)
        if url.startswith("postgresql"):
            bound_sessions(storage.engine)
        return storage
    except Exception as exc:  # sqlalchemy's own errors: bad driver, host, credentials
        raise UsageError(f"--storage: cannot open {url}: {type(exc).__name__}: {exc}") from None

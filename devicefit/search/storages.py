"""Optuna storages from a ``--storage`` URL (or ``$DEVICEFIT_STORAGE``).

Any Optuna RDB URL (``sqlite:///...``, ``postgresql://user@host/db``, ``mysql://...``)
and ``journal:PATH`` for Optuna's journal file. Optuna's storage classes are used
as they are; only their options are chosen here.
"""

from __future__ import annotations

from typing import Any

from devicefit.errors import UsageError

JOURNAL = "journal:"


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
            }
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except Exception as exc:  # sqlalchemy's own errors: bad driver, host, credentials
        raise UsageError(f"--storage: cannot open {url}: {type(exc).__name__}: {exc}") from None

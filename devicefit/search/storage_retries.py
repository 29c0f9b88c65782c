"""Riding out a storage outage: which errors mean "unreachable", and retrying a step.

A PostgreSQL server restarting or a network blip must not lose a search: the driver's
storage steps are retried with back-off for about a minute, then the driver stops cleanly
(every trial already told is stored, and ``devicefit resume`` goes on).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from rich.console import Console

STORAGE_RETRIES = 6  # back-off 1, 2, 4, 8, 16, 30 s: about a minute of outage

T = TypeVar("T")


class StorageUnavailable(Exception):
    """The study's storage did not answer through all retries."""


def storage_errors() -> tuple[type[BaseException], ...]:
    """What a storage raises when it cannot be reached (not when a query is wrong).

    Returns:
        The exception classes of a dropped or refused connection; SQLAlchemy's are
        included when it is installed.
    """
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from sqlalchemy import exc

        errors += [exc.OperationalError, exc.InterfaceError]
    except ImportError:
        pass
    return tuple(errors)


def _lost_connection(exc: BaseException) -> bool:
    # SQLAlchemy marks any database error it recognised as a dropped connection (psycopg
    # reports some as a plain DatabaseError, e.g. "SSL SYSCALL error: EOF detected").
    return bool(getattr(exc, "connection_invalidated", False))


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` is the storage being unreachable.

    Args:
        exc: an exception raised by a storage call.

    Returns:
        True when it, or what caused it (Optuna wraps failed commits), is a storage
        error of ``storage_errors()`` or a connection SQLAlchemy marked as lost.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, storage_errors()) or _lost_connection(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retrying(console: Console, step: Callable[..., T], *args: object) -> T:
    """``step(*args)``, retried with back-off while the storage is unreachable.

    Steps must be safe to repeat: attributes are set again, artifacts rewritten whole,
    and a tell comes last.

    Args:
        console: where each retry is announced.
        step: the storage step.
        *args: its arguments.

    Returns:
        What ``step`` returned.

    Raises:
        StorageUnavailable: the storage stayed unreachable after the last try.
        Exception: whatever ``step`` raised that is not an outage, unchanged.
    """
    delay = 1.0
    for attempt in range(STORAGE_RETRIES + 1):
        try:
            return step(*args)
        except Exception as exc:
            if not is_outage(exc):
                raise
            if attempt == STORAGE_RETRIES:
                raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from None
            console.print(
                f"[yellow]storage unreachable ({type(exc).__name__}); retry "
                f"{attempt + 1}/{STORAGE_RETRIES} in {delay:.0f} s"
            )
            time.sleep(delay)
            delay = min(2 * delay, 30.0)
    raise AssertionError("unreachable")

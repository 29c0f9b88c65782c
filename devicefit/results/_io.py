"""Atomic file writes: a reader (or a killed process) never sees a half-written report."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write to a temp file beside ``path``, then rename over it (atomic on one filesystem).

    Args:
        path: the file to (re)write; missing parent folders are made.
        data: the content; text is written as UTF-8.

    Returns:
        ``path``, as a Path.

    Raises:
        OSError: the file could not be written (the temp file is removed, ``path`` left as
            it was).
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return _replace_with(path, lambda f: f.write(payload))


def copy_atomic(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` the same way: a reader sees the old file or the whole new one.

    Args:
        src: the file to copy.
        dst: where it goes; missing parent folders are made.

    Returns:
        ``dst``, as a Path.

    Raises:
        OSError: ``src`` could not be read or ``dst`` written (``dst`` is left as it was).
    """
    with open(src, "rb") as source:
        return _replace_with(dst, lambda f: shutil.copyfileobj(source, f))


def _replace_with(path: Path, fill: Callable[[BinaryIO], object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports and models are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path

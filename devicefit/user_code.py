"""Importing a user's Python code named on the command line (``FILE.py:NAME`` or
``MODULE:NAME``), with every failure one line naming the flag and the target."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from devicefit.errors import UsageError


def is_file_target(target: str) -> bool:
    """Whether ``target`` (the part before ``:``) names a file rather than a module.

    Args:
        target: e.g. ``loaders.py``, ``./data/load``, or ``my_pkg.loaders``.

    Returns:
        True when it ends in ``.py`` or holds a path separator.
    """
    return target.endswith(".py") or "/" in target or "\\" in target


def absolute_target(spec: str) -> str:
    """``FILE:NAME`` with the file made absolute, so a study resumed from another folder
    (or run by workers that start elsewhere) imports the same file; a module as it is.

    Args:
        spec: ``FILE.py:NAME`` or ``MODULE:NAME`` as given on the command line.

    Returns:
        The spec with the file's path absolute (``~`` expanded); a module spec unchanged.
    """
    target, name = spec.rsplit(":", 1)
    if not is_file_target(target):
        return spec
    return f"{Path(target).expanduser().resolve()}:{name}"


def import_target(target: str, where: str, prefix: str) -> Any:
    """The module ``target`` names: a ``.py`` file (imported once per process under a
    name made from ``prefix`` and its path, so two files of the same name do not
    collide) or an importable module. A UsageError starting with ``where`` otherwise.

    Args:
        target: the part of a spec before ``:``.
        where: the flag (or study key) that named it, to start error messages.
        prefix: the start of the module name a file is imported under.

    Returns:
        The imported module.

    Raises:
        UsageError: the file is missing or not Python, or importing it (or the module)
            raised; the message has the error's last line.
    """
    if is_file_target(target):
        path = Path(target).expanduser()
        if not path.is_file():
            raise UsageError(f"{where}: file not found: {path}")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        module_name = f"{prefix}_{digest}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"{where}: cannot import {path} as Python")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - a user's file can fail in any way
            raise UsageError(f"{where}: cannot import {path}: {one_line(exc)}") from None
        sys.modules[module_name] = module
        return module
    try:
        return importlib.import_module(target)
    except Exception as exc:  # noqa: BLE001 - a user's module can fail in any way
        raise UsageError(
            f"{where}: cannot import module {target}: {one_line(exc)} "
            "(a file is given by its path, ending in .py)"
        ) from None


def one_line(exc: BaseException) -> str:
    """An exception as ``Type: its last line`` (where Python puts the message).

    Args:
        exc: the exception, often from a user's code.

    Returns:
        e.g. ``ValueError: bad shape``, the message cut to 300 characters; the type's name
        alone when the message is empty.
    """
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1][:300]}" if text else type(exc).__name__


def user_frame(exc: BaseException) -> str:
    """Where in the user's code it raised: the innermost frame outside devicefit and
    installed packages, as `` at FILE:LINE`` (empty when there is none).

    Args:
        exc: an exception with its traceback.

    Returns:
        e.g. `` at loaders.py:12`` (the file's name only), or "".
    """
    own = str(Path(__file__).resolve().parent)  # this package's folder
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(own) and "site-packages" not in f.filename
    ]
    return f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""

"""Atomic writes: a file or a trial folder is either complete on disk or absent."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from devicefit.search import attrs


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling file and a rename: the file is
    either complete or left as it was.

    Args:
        path: the file to write; its folder is created when missing.
        data: the file's whole contents.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` as indented JSON with sorted keys, whole or not at all.

    Args:
        path: the file to write; its folder is created when missing.
        data: a value ``json.dumps`` can write.
    """
    write_bytes_atomic(path, _json(data))


def write_folder_atomic(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a temporary sibling folder, then rename it into place.

    Args:
        folder: the folder to make; one already there (left by a dead driver) is replaced.
        files: file name -> contents, written directly in the folder.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if folder.exists():  # left by a trial whose driver died before telling the study
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_trial_folder(
    results: Path,
    number: int,
    tflite: bytes,
    keras_model: bytes,
    plan: dict[str, Any],
    metrics: dict[str, Any],
) -> None:
    """Write trial ``number``'s artifacts, whole or not at all, before it is told.

    Args:
        results: the study's results folder.
        number: the trial's number; its folder is ``trials/<number>``.
        tflite: the candidate's TFLite file.
        keras_model: its .keras file (empty: not kept).
        plan: the trial's plan as a dict.
        metrics: its stored record (TrialMetrics.to_dict()).
    """
    files = {"model.keras": keras_model} if keras_model else {}
    files["model.tflite"] = tflite
    files["plan.json"] = _json(plan)
    files["metrics.json"] = _json({"trial": number, **metrics})
    write_folder_atomic(results / attrs.TRIALS_DIR / str(number), files)


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

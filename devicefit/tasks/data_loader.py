"""``--data FILE.py:FUNCTION`` (or ``MODULE:FUNCTION``): the user's own data pipeline.

The function takes no arguments and returns the splits as ``tf.data.Dataset``s of
``(inputs, labels)`` elements: a tuple ``(train, val)`` or ``(train, val, test)``, or a
dict with ``"train"``, ``"val"`` and optionally ``"test"``. Elements may be batched or
single samples (told apart by the model's input rank); a model with several outputs
gets its labels as a dict by output name. Without a test split the validation split is
halved, as for an ``.npz``.

One pass over each dataset writes its inputs to a file on disk, a batch in memory at a
time (like ``Dataset.cache(filename)``); from then on every process reads the rows it
needs (:class:`DiskRows`), a batch at a time, so fine-tuning, calibration
and scoring never hold a split in memory. Labels are kept in memory: fine-tuning builds
its targets from them, beside the original model's outputs, in memory anyway.

The files live in the cache folder under a name made from the loader's path, its file's
contents and the function; the driver writes them anew when a study starts or resumes
(what the loader reads may have changed since), and workers reuse them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.errors import UsageError
from devicefit.tasks.lazy_rows import DiskRows
from devicefit.user_code import absolute_target, import_target, is_file_target, one_line, user_frame

SPLITS = ("train", "val", "test")
FORMAT = 1  # bump when the files' layout changes, so old caches are not read
LAYOUT = "splits.json"  # written last: a folder without it is incomplete


def is_data_loader(text: str) -> bool:
    """Whether ``--data`` names a function (``target:function``) rather than a file or
    folder (a path that exists wins: ``C:\\data.npz``)."""
    return ":" in text and not Path(text).exists()


def loader_folder(spec: str) -> Path:
    """Where the loader's splits are written: a name from its spec and file contents."""
    from devicefit.tasks.cache import cache_root

    spec = absolute_target(spec)
    target, function = spec.rsplit(":", 1)
    digest = hashlib.sha1(f"{FORMAT}:{spec}".encode())
    if is_file_target(target) and Path(target).is_file():
        digest.update(Path(target).read_bytes())
    return cache_root() / "data" / f"{function}-{digest.hexdigest()[:16]}"


def refresh(spec: str) -> None:
    """Forget the splits written for ``spec`` (the driver, at a study's start: the next
    read runs the loader again). Processes that still read the old files keep them open."""
    shutil.rmtree(loader_folder(spec), ignore_errors=True)


def written_splits(spec: str) -> Path | None:
    """The folder of splits the loader's last read wrote (None before any), which a Ray
    worker receives in place of the loader."""
    found = sorted(loader_folder(spec).glob(f"rank*/{LAYOUT}"))
    return found[-1].parent if found else None


def is_written_splits(path: str) -> bool:
    """Whether ``path`` is such a folder (``--data`` as a Ray worker sees it)."""
    return (Path(path) / LAYOUT).is_file()


def read_written_splits(path: str, dtype: Any) -> dict[str, Any]:
    """A folder of written splits, read as :func:`read_loader` reads it."""
    return _read_splits(Path(path), dtype)


def read_loader(spec: str, input_rank: int, dtype: Any) -> dict[str, Any]:
    """The loader's splits as an ``.npz`` would give them (``x_train``, ``y_train`` or
    ``y_train_<output>``, ...), inputs as DiskRows of ``dtype`` (``input_rank``: the
    model's input rank, batch axis included)."""
    from devicefit.tasks.cache import locked

    folder = loader_folder(spec) / f"rank{input_rank}"
    if not (folder / LAYOUT).exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with locked(folder.parent / f"rank{input_rank}.lock"):
            if not (folder / LAYOUT).exists():  # another process may have written it
                _write_splits(spec, input_rank, folder)
    return _read_splits(folder, dtype)


def _datasets(spec: str) -> dict[str, Any]:
    """Call the loader; its datasets by split name, or one UsageError line."""
    import tensorflow as tf

    where = f"--data {spec}"
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise UsageError(f"{where}: give FILE.py:FUNCTION or MODULE:FUNCTION")
    function = getattr(import_target(target, where, "devicefit_data"), name, None)
    if not callable(function):
        raise UsageError(f"{where}: {target} has no function {name!r}")
    try:
        result = function()
    except Exception as exc:  # noqa: BLE001 - a user's loader can fail in any way
        raise UsageError(f"{where}: {name}() raised {one_line(exc)}{user_frame(exc)}") from None
    if isinstance(result, dict) and {"train", "val"} <= set(result) <= set(SPLITS):
        found = dict(result)
    elif isinstance(result, list | tuple) and len(result) in (2, 3):
        found = dict(zip(SPLITS, result, strict=False))
    else:
        found = {}
    if not found or not all(isinstance(d, tf.data.Dataset) for d in found.values()):
        raise UsageError(
            f"{where}: {name}() must return (train, val) or (train, val, test) tf.data.Datasets, "
            f"or a dict of them by 'train', 'val' and 'test'; got {_describe(result)}"
        )
    return found


def _write_splits(spec: str, input_rank: int, folder: Path) -> None:
    """Every split's inputs to ``x_<split>.bin`` and labels to ``.npy`` files, in a
    temporary folder renamed into place when complete (never a half-written cache)."""
    datasets = _datasets(spec)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".writing-"))
    os.chmod(work, 0o755)  # mkdtemp makes it owner-only; a cache may be shared
    try:
        layout = {}
        for split, dataset in datasets.items():
            layout[split] = _write_split(spec, split, dataset, input_rank, work)
        (work / LAYOUT).write_text(json.dumps(layout))
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_split(
    spec: str, split: str, dataset: Any, input_rank: int, work: Path
) -> dict[str, Any]:
    from devicefit.tasks.reading_progress import ReadingProgress

    where = f"--data {spec}: the {split} dataset"
    labels: list[Any] = []
    rows, sample, dtype = 0, None, None
    with open(work / f"x_{split}.bin", "wb") as out, ReadingProgress(split, dataset) as bar:
        try:
            for element in dataset.as_numpy_iterator():
                x, y = _pair(element, where)
                if x.ndim == input_rank - 1:  # one sample: a batch of one
                    x, y = x[None], _map(y, lambda v: np.asarray(v)[None])
                if x.ndim != input_rank or (sample is not None and x.shape[1:] != sample):
                    want = sample or f"rank {input_rank - 1} samples"
                    raise UsageError(f"{where} gives inputs of shape {x.shape}; expected {want}")
                sample, dtype = x.shape[1:], x.dtype if dtype is None else dtype
                out.write(np.ascontiguousarray(x, dtype=dtype).tobytes())
                labels.append(_map(y, np.asarray))
                rows += len(x)
                bar.advance(len(x))
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user's pipeline can fail in any way
            raise UsageError(f"{where} failed: {_reason(exc)}") from None
    if not rows:
        raise UsageError(f"{where} is empty")
    names = _save_labels(labels, split, work, where)
    return {"rows": rows, "sample": list(sample), "dtype": str(dtype), "labels": names}


def _pair(element: Any, where: str) -> tuple[np.ndarray, Any]:
    if not (isinstance(element, tuple) and len(element) == 2):
        raise UsageError(f"{where} must give (inputs, labels) pairs; got {_describe(element)}")
    x, y = element
    if not isinstance(x, np.ndarray):
        raise UsageError(
            f"{where} gives inputs as {_describe(x)}; models with one input take one array"
        )
    return x, y


def _map(y: Any, function: Any) -> Any:
    return {k: function(v) for k, v in y.items()} if isinstance(y, dict) else function(y)


def _save_labels(labels: list[Any], split: str, work: Path, where: str) -> list[str] | None:
    """Labels as ``y_<split>.npy`` or, by output name, ``y_<split>_<output>.npy``."""
    if isinstance(labels[0], dict):
        names = sorted(labels[0])
        if any(sorted(part) != names for part in labels):
            raise UsageError(f"{where} gives labels for different outputs in different elements")
        for name in names:
            np.save(work / f"y_{split}_{name}.npy", np.concatenate([p[name] for p in labels]))
        return names
    try:
        np.save(work / f"y_{split}.npy", np.concatenate(labels))
    except ValueError as exc:
        raise UsageError(f"{where} gives labels of different shapes: {exc}") from None
    return None


def _read_splits(folder: Path, dtype: Any) -> dict[str, Any]:
    layout = json.loads((folder / LAYOUT).read_text())
    arrays: dict[str, Any] = {}
    for split, info in layout.items():
        path = str(folder / f"x_{split}.bin")
        sample = tuple(info["sample"])
        arrays[f"x_{split}"] = DiskRows(path, info["dtype"], sample, info["rows"], dtype)
        for name in info["labels"] or [None]:
            key = f"y_{split}" if name is None else f"y_{split}_{name}"
            arrays[key] = np.load(folder / f"{key}.npy", allow_pickle=False)
    return arrays


def _reason(exc: BaseException) -> str:
    """What went wrong inside a pipeline, in one line: for an error tf.data raised, the
    Python exception of the user's function it wraps (else its first line, without the
    ``{{function_node ...}}`` prefix), not the graph node's name it ends with."""
    import tensorflow as tf

    if not isinstance(exc, tf.errors.OpError):
        return f"{one_line(exc)}{user_frame(exc)}"
    lines = [line.strip() for line in exc.message.splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception): ", line)]
    first = re.sub(r"^\{\{[^}]*\}\}\s*", "", lines[0]) if lines else type(exc).__name__
    return (raised[-1] if raised else first)[:300]


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))}"
    if isinstance(value, list | tuple):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__

"""``--data FILE.py:FUNCTION`` (or ``MODULE:FUNCTION``): the user's own data pipeline.

The function takes no arguments and returns the splits as ``tf.data.Dataset``s of
``(inputs, labels)`` elements: a tuple ``(train, val)`` or ``(train, val, test)``, or a
dict with ``"train"``, ``"val"`` and optionally ``"test"``. Elements may be batched or
single samples (told apart by the model's input rank); a model with several inputs
takes its inputs as a dict by input name, and one with several outputs its labels as a
dict by output name. Without a test split the validation split is
halved, as for an ``.npz``.

One pass over each dataset writes its inputs to a file on disk, a batch in memory at a
time (like ``Dataset.cache(filename)``); from then on every process reads the rows it
needs (:class:`DiskRows`), a batch at a time, so fine-tuning, calibration and scoring
never hold a split in memory. Labels are kept in memory: fine-tuning builds its targets
from them, beside the original model's outputs, in memory anyway.

The driver runs the loader each time a study starts or resumes (what it reads may have
changed) and writes a folder of its own in the cache folder, named by host, process and
time; its workers (and Ray nodes, which receive a copy) read that folder, never the
loader. The folder is removed when the driver exits, or at the next read on this host
once its driver is gone (a driver that was killed).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.errors import UsageError
from devicefit.tasks.lazy_rows import DiskRows
from devicefit.user_code import absolute_target, import_target, one_line, user_frame

SPLITS = ("train", "val", "test")
LAYOUT = "splits.json"  # written last: a folder without it is incomplete


def is_data_loader(text: str) -> bool:
    """Whether ``--data`` names a function (``target:function``) rather than a file or
    folder (a path that exists wins: ``C:\\data.npz``).

    Args:
        text: the ``--data`` value as given.

    Returns:
        True for a loader spec, False for a path (an ``.npz``, an image folder, or a
        folder a loader's read wrote).
    """
    return ":" in text and not Path(text).exists()


def loader_folder(spec: str) -> Path:
    """Where the loader's reads are written: one sub-folder per read.

    Args:
        spec: the loader, ``FILE.py:FUNCTION`` or ``MODULE:FUNCTION``; a relative file
            is made absolute first, so one loader has one folder wherever it is run from.

    Returns:
        ``<cache>/data/<function>-<digest of spec>``; not created here.
    """
    from devicefit.tasks.cache import cache_root

    spec = absolute_target(spec)
    digest = hashlib.sha1(spec.encode()).hexdigest()[:16]
    return cache_root() / "data" / f"{spec.rsplit(':', 1)[1]}-{digest}"


def is_written_splits(path: str) -> bool:
    """Whether ``path`` is a folder a loader's read wrote (``--data`` as workers get it).

    Args:
        path: the ``--data`` value.

    Returns:
        True only for a complete read (its layout file is written last).
    """
    return (Path(path) / LAYOUT).is_file()


def read_written_splits(path: str, dtype: Any) -> dict[str, Any]:
    """A folder a loader's read wrote, as :func:`read_loader` gives it.

    Args:
        path: the folder (``--data`` as workers get it).
        dtype: the dtype a one-input model takes: its inputs are cast to it as rows are
            read; each input of a model with several keeps its stored dtype.

    Returns:
        The splits by ``.npz`` key: inputs as :class:`DiskRows`, labels as arrays.
    """
    return _read_splits(Path(path), dtype)


def read_loader(
    spec: str, input_rank: int | dict[str, int], dtype: Any
) -> tuple[dict[str, Any], Path]:
    """Run the loader and write its splits (the driver); the splits as an ``.npz`` would
    give them (``x_train`` or ``x_train_<input>``, ``y_train`` or ``y_train_<output>``,
    ...), inputs as DiskRows of ``dtype`` (``input_rank``: the model's input rank, batch
    axis included, or each input's by name for a model with several; their inputs keep
    the dtype the pipeline gave), and the folder written, which workers read instead of
    running the loader.

    Args:
        spec: the loader, ``FILE.py:FUNCTION`` or ``MODULE:FUNCTION``.
        input_rank: the model's input rank (batch axis included), or each input's rank by
            name: it tells a batched element from a single sample.
        dtype: the dtype a one-input model's inputs are read as.

    Returns:
        The splits by ``.npz`` key, and the folder this read wrote (removed when this
        process exits).

    Raises:
        UsageError: the loader cannot be imported or called, raises, or gives something
            other than (inputs, labels) datasets of numbers with one sample shape, or a
            dataset that never ends or is empty.
    """
    parent = loader_folder(spec)
    parent.mkdir(parents=True, exist_ok=True)
    _sweep(parent)
    folder = parent / f"{_OWNER}-{time.time_ns()}"
    _write_splits(spec, input_rank, folder)
    atexit.register(shutil.rmtree, folder, True)
    _written[absolute_target(spec)] = folder
    return _read_splits(folder, dtype), folder


def written_by_this_process(spec: str) -> Path:
    """The folder this process's last read of ``spec`` wrote (KeyError before any).

    Args:
        spec: the loader, as given to :func:`read_loader` (relative or absolute).

    Returns:
        The folder workers are given as ``--data`` instead of the loader.

    Raises:
        KeyError: this process has not read ``spec`` yet.
    """
    return _written[absolute_target(spec)]


_written: dict[str, Path] = {}


# Who writes: the host and process, so a later read can tell a killed driver's folder.
_OWNER = f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"


def _sweep(parent: Path) -> None:
    """Remove the folders (and half-written ones) of drivers on this host that are gone."""
    host = socket.gethostname().replace("-", "_")
    for child in parent.iterdir():
        parts = child.name.lstrip(".").removeprefix("writing-").split("-")
        if len(parts) >= 2 and parts[0] == host and parts[1].isdigit():
            if not _alive(int(parts[1])):
                shutil.rmtree(child, ignore_errors=True)


def _alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) there sends Ctrl-C: keep the folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


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


def _write_splits(spec: str, input_rank: int | dict[str, int], folder: Path) -> None:
    """Every split's inputs to ``x_<split>.bin`` and labels to ``.npy`` files, in a
    temporary folder renamed into place when complete (never a half-written cache)."""
    datasets = _datasets(spec)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".writing-{_OWNER}-"))
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
    spec: str, split: str, dataset: Any, input_rank: int | dict[str, int], work: Path
) -> dict[str, Any]:
    import tensorflow as tf

    from devicefit.tasks.reading_progress import ReadingProgress

    where = f"--data {spec}: the {split} dataset"
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise UsageError(f"{where} never ends (a .repeat() without a count?)")
    ranks = input_rank if isinstance(input_rank, dict) else {"": input_rank}
    labels: list[Any] = []
    rows = 0
    inputs: dict[str, dict[str, Any]] = {}  # each input's sample shape and dtype
    # One hash per input, so the digest does not depend on how the pipeline batches.
    hashes = {name: hashlib.sha1() for name in ranks}
    with contextlib.ExitStack() as files, ReadingProgress(split, dataset) as bar:
        out = {n: files.enter_context(open(work / _input_file(split, n), "wb")) for n in ranks}
        try:
            for element in dataset.as_numpy_iterator():
                x, y = _pair(element, where, tuple(ranks))
                if all(x[n].ndim == rank - 1 for n, rank in ranks.items()):  # one sample
                    x, y = _map(x, lambda v: v[None]), _map(y, lambda v: np.asarray(v)[None])
                for name, values in x.items():
                    seen = inputs.setdefault(name, {})
                    data = _checked(values, ranks[name], seen, where, name).tobytes()
                    out[name].write(data)
                    hashes[name].update(data)
                labels.append(_map(y, np.asarray))
                count = len(next(iter(x.values())))
                if any(len(values) != count for values in x.values()):
                    raise UsageError(f"{where} gives inputs with different numbers of rows")
                rows += count
                bar.advance(count)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user's pipeline can fail in any way
            raise UsageError(f"{where} failed: {_reason(exc)}") from None
    if not rows:
        raise UsageError(f"{where} is empty")
    digest = hashes[""] if "" in hashes else hashlib.sha1()
    for name in sorted(name for name in hashes if name):
        digest.update(hashes[name].digest())
    names = _save_labels(labels, split, work, where, digest)
    return {"rows": rows, "inputs": inputs, "labels": names, "digest": digest.hexdigest()}


def _checked(
    values: np.ndarray, rank: int, seen: dict[str, Any], where: str, name: str
) -> np.ndarray:
    """A batch of input ``name``, in the shape and dtype of its first batch (``seen``,
    filled by the first)."""
    sample = tuple(seen.get("sample", values.shape[1:]))
    if values.ndim != rank or values.shape[1:] != sample:
        want = sample if "sample" in seen else f"rank {rank - 1} samples"
        what = f"inputs {name!r}" if name else "inputs"
        raise UsageError(f"{where} gives {what} of shape {values.shape}; expected {want}")
    seen.setdefault("sample", list(sample))
    seen.setdefault("dtype", str(values.dtype))
    return np.ascontiguousarray(values, dtype=seen["dtype"])


def _input_file(split: str, name: str) -> str:
    return f"x_{split}.bin" if not name else f"x_{split}_{name}.bin"


def _label_file(split: str, name: str | None) -> str:
    return f"y_{split}.npy" if name is None else f"y_{split}_{name}.npy"


def splits_digest(folder: str | Path) -> str:
    """One digest of every split's inputs and labels as a read wrote them: a resumed
    study whose loader now gives other data is told so.

    Args:
        folder: a folder a loader's read wrote.

    Returns:
        16 hex digits, the same for the same data however the pipeline batched it.
    """
    layout = json.loads((Path(folder) / LAYOUT).read_text())
    joined = ",".join(f"{split}:{layout[split]['digest']}" for split in sorted(layout))
    return hashlib.sha1(joined.encode()).hexdigest()[:16]


def _pair(element: Any, where: str, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], Any]:
    """The element's inputs by name (``""`` for a model's one input) and labels."""
    if not (isinstance(element, tuple) and len(element) == 2):
        raise UsageError(f"{where} must give (inputs, labels) pairs; got {_describe(element)}")
    x, y = element
    if names == ("",):
        if not isinstance(x, np.ndarray):
            raise UsageError(
                f"{where} gives inputs as {_describe(x)}; models with one input take one array"
            )
        x = {"": x}
    elif not (isinstance(x, dict) and set(x) == set(names)):
        raise UsageError(
            f"{where} gives inputs as {_describe(x)}; the model takes a dict of arrays by its "
            f"input names {', '.join(names)}"
        )
    inputs = [(f"inputs {name!r}" if name else "inputs", values) for name, values in x.items()]
    for what, values in (*inputs, *_labels_by_name(y)):
        dtype = np.asarray(values).dtype
        if dtype.kind not in "biuf":
            text = " (text or objects)" if dtype.kind in "OSUV" else ""
            raise UsageError(f"{where} gives {what} of dtype {dtype}{text}, not numbers")
    return {name: x[name] for name in names}, y


def _labels_by_name(y: Any) -> list[tuple[str, Any]]:
    if isinstance(y, dict):
        return [(f"labels {name!r}", values) for name, values in y.items()]
    return [("labels", y)]


def _map(y: Any, function: Any) -> Any:
    return {k: function(v) for k, v in y.items()} if isinstance(y, dict) else function(y)


def _save_labels(
    labels: list[Any], split: str, work: Path, where: str, digest: Any
) -> list[str] | None:
    """Labels as ``y_<split>.npy`` or, by output name, ``y_<split>_<output>.npy``, each
    also added to ``digest``."""
    if isinstance(labels[0], dict):
        names = sorted(labels[0])
        if any(sorted(part) != names for part in labels):
            raise UsageError(f"{where} gives labels for different outputs in different elements")
        for name in names:
            _save(work / _label_file(split, name), [p[name] for p in labels], where, digest)
        return names
    _save(work / _label_file(split, None), labels, where, digest)
    return None


def _save(path: Path, parts: list[np.ndarray], where: str, digest: Any) -> None:
    try:
        values = np.concatenate(parts)
    except ValueError as exc:
        raise UsageError(f"{where} gives labels of different shapes: {exc}") from None
    np.save(path, values, allow_pickle=False)
    digest.update(np.ascontiguousarray(values).tobytes())


def _read_splits(folder: Path, dtype: Any) -> dict[str, Any]:
    layout = json.loads((folder / LAYOUT).read_text())
    arrays: dict[str, Any] = {}
    for split, info in layout.items():
        for name, stored in info["inputs"].items():  # several inputs keep their own dtypes
            path = str(folder / _input_file(split, name))
            sample, cast = tuple(stored["sample"]), dtype if not name else None
            rows = DiskRows(path, stored["dtype"], sample, info["rows"], cast)
            arrays[_input_file(split, name).removesuffix(".bin")] = rows
        for name in info["labels"] or [None]:
            file = _label_file(split, name)
            arrays[file.removesuffix(".npy")] = np.load(folder / file, allow_pickle=False)
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

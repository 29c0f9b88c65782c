"""Where built-in task models live once trained, and how they get trained the first time.

Built-in tasks train their model on first use instead of shipping weights, so a
trained model is cached per task; trial workers then only load it. Saves are
atomic (temp file + ``os.replace``) and guarded by a file lock, so workers that
start together never read a half-written file and train only once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from devicefit.quiet import silence_tensorflow

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()
from rich.console import Console  # noqa: E402 - after silence_tensorflow()
from rich.progress import Progress  # noqa: E402 - after silence_tensorflow()

from devicefit.tasks.reading_progress import transient_bar  # noqa: E402 - after silence_tensorflow()

CACHE_ENV = "DEVICEFIT_CACHE"


def cache_root() -> Path:
    """``$DEVICEFIT_CACHE``, else the platform's user cache folder + ``devicefit``.

    Returns:
        The folder holding devicefit's caches (trained task models, loader reads); it
        may not exist yet.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "devicefit"


def task_cache_dir(task: str) -> Path:
    """The cache folder of one built-in task, created if absent.

    Args:
        task: the built-in task's name (its sub-folder of :func:`cache_root`).

    Returns:
        The folder, which exists on return.
    """
    folder = cache_root() / task
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class RichProgress(keras.callbacks.Callback):
    """A rich progress bar over all training steps, with epoch, loss and ETA.

    Keras' own per-epoch lines would interleave with the search display; rich
    draws one bar on stderr and draws nothing when stderr is not a terminal.
    """

    def __init__(self, label: str, console: Console | None = None) -> None:
        super().__init__()
        self.label = label
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._bar: Any = None
        self._epoch = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Start the bar over every step of every epoch of the ``fit``.

        Args:
            logs: Keras's logs so far, if any (a loss shown in the description).
        """
        epochs = int(self.params.get("epochs") or 1)
        steps = int(self.params.get("steps") or 1)
        self._progress = transient_bar(self.console)
        self._progress.start()
        self._bar = self._progress.add_task(self._describe(logs), total=epochs * steps)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Note the epoch, for the bar's description.

        Args:
            epoch: the epoch starting, counted from 0.
            logs: unused (Keras's callback signature).
        """
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Advance the bar one step and show the latest loss.

        Args:
            batch: the step's index within the epoch (unused).
            logs: Keras's logs of the step; its ``loss`` is shown.
        """
        if self._progress is not None:
            self._progress.update(self._bar, advance=1, description=self._describe(logs))

    def on_train_end(self, logs: dict | None = None) -> None:
        """Stop the bar (it is transient: it leaves no line behind).

        Args:
            logs: unused (Keras's callback signature).
        """
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _describe(self, logs: dict | None) -> str:
        epochs = self.params.get("epochs") or 1
        loss = (logs or {}).get("loss")
        tail = f" loss {float(loss):.4g}" if loss is not None else ""
        return f"training {self.label}: epoch {self._epoch + 1}/{epochs}{tail}"


Trainer = Callable[[list[keras.callbacks.Callback]], keras.Model]


def cached_model(task: str, filename: str, train: Trainer, seed: int = 0) -> keras.Model:
    """Load ``<cache>/<task>/<filename>``, training and saving it first if absent.

    ``filename`` should carry a recipe version (``model-v1.keras``) so a changed
    recipe never loads a stale model. ``train`` gets the callbacks to pass to
    ``fit`` and returns the trained model; the global seed is set before it runs.

    Args:
        task: the built-in task's name: its cache sub-folder and the progress bar's label.
        filename: the model file's name in that folder.
        train: trains the model when no valid cached file exists.
        seed: the global Keras seed set before ``train`` runs.

    Returns:
        The model as loaded from the cache file, uncompiled (also on the run that
        trained it). A damaged cache file is retrained, not an error.
    """
    path = task_cache_dir(task) / filename
    model = _load_if_valid(path)
    if model is not None:
        return model
    with locked(path.with_suffix(".lock")):
        model = _load_if_valid(path)  # another process may have trained it while we waited
        if model is not None:
            return model
        keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        model = train([RichProgress(task)])
        _save_atomically(model, path)
        console = Console(stderr=True)
        if console.is_terminal:
            console.print(
                f"trained {task} model in {time.perf_counter() - start:.0f} s, cached at {path}"
            )
    # Reloaded so the first run hands out exactly what later runs will load.
    return keras.models.load_model(path, compile=False)


def _load_if_valid(path: Path) -> keras.Model | None:
    if not path.exists():
        return None
    try:
        return keras.models.load_model(path, compile=False)
    except Exception:  # noqa: BLE001 - a damaged cache file is retrained, not fatal
        return None


def uncompiled_copy(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with its weights and no compile state, for saving: a compiled
    model also saves its optimizer state (3x the weights for Adam) and its loss, which
    ``load_model`` cannot rebuild when it is a function of ours (fine-tuning's distillation
    loss). Rebuilt from its config the copy is uncompiled; ``clone_model`` would compile it.

    Args:
        model: the model to save; left as it is.

    Returns:
        A new model of the same class and config, holding copies of ``model``'s weights.

    Raises:
        Exception: whatever ``from_config`` raises for a model it cannot rebuild (a
            subclassed model without ``get_config``).
    """
    plain = type(model).from_config(model.get_config())
    plain.set_weights(model.get_weights())
    return plain


def _save_atomically(model: keras.Model, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".keras")
    os.close(fd)
    try:
        uncompiled_copy(model).save(tmp, overwrite=True)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a cache may be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` for the ``with`` block, across processes.

    On Windows (no ``fcntl``) nothing is locked: the atomic replace of the cache file
    still keeps readers from a torn file, but two processes may both train.

    Args:
        lock_path: the lock file, created if absent and left in place afterwards.

    Yields:
        Nothing, once the lock is held (released when the block ends).
    """
    try:
        import fcntl
    except ImportError:  # Windows: no lock; atomic replace still prevents torn files
        yield
        return
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

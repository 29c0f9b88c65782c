"""Silence TensorFlow's C++ and absl logging, and import TensorFlow quietly once.

The converter prints hundreds of lines per call, and TensorFlow's import writes
absl messages straight to file descriptor 2 before any log level applies; a
search converts hundreds of models, so the noise would drown the progress display.
"""

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def stderr_to_devnull() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null (C++ code writes there directly).

    Python's ``sys.stderr`` is flushed before and after; without a stderr at all, nothing
    is redirected.

    Yields:
        Nothing; file descriptor 2 is restored on leaving, also after an exception.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def silence_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="tensorflow")
    warnings.filterwarnings("ignore", module="keras")
    if "tensorflow" not in sys.modules:
        with stderr_to_devnull():
            import tensorflow  # noqa: F401 - loaded here, its start-up noise muted

"""Silence TensorFlow's C++ and absl logging before TensorFlow is imported.

The converter prints hundreds of lines per call; a search converts hundreds of
models, so the noise would drown the progress display.
"""

import logging
import os
import warnings


def silence_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="tensorflow")
    warnings.filterwarnings("ignore", module="keras")

"""Load a LiteRT interpreter: ai-edge-litert, else tflite-runtime, else TensorFlow's copy."""

from __future__ import annotations

from typing import Any


def interpreter_class() -> tuple[type, str]:
    """The interpreter class and a label naming the runtime and its version.

    Returns:
        The first importable of ai-edge-litert, tflite-runtime and TensorFlow's
        ``tf.lite.Interpreter``, and e.g. ``"ai-edge-litert 1.2.0"``.

    Raises:
        ImportError: none of the three is installed.
    """
    try:
        from ai_edge_litert import interpreter as litert

        return litert.Interpreter, f"ai-edge-litert {_version('ai-edge-litert')}"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, f"tflite-runtime {_version('tflite-runtime')}"
    except ImportError:
        pass
    import tensorflow as tf

    return tf.lite.Interpreter, f"tensorflow {tf.__version__}"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def make_interpreter(model_content: bytes, num_threads: int) -> Any:
    """An interpreter for ``model_content``; ``num_threads`` is always explicit.

    Args:
        model_content: the TFLite flatbuffer's bytes.
        num_threads: threads the interpreter may use.

    Returns:
        A new interpreter of the runtime ``interpreter_class`` picks (tensors not yet
        allocated).

    Raises:
        ImportError: no LiteRT runtime is installed.
    """
    cls, _ = interpreter_class()
    return cls(model_content=model_content, num_threads=int(num_threads))

"""Run a TFLite file over a data set on the host, batch by batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from devicefit.deploy.runtime import make_interpreter
from devicefit.errors import TrialFailed


def predict(tflite: bytes, x: Any, num_threads: int = 1, batch: int = 32) -> Any:
    """Outputs of the TFLite model for every sample of ``x``: one array, or for a file with
    several outputs a dict by their signature names (the Keras model's output names).
    ``x`` is an array, or for a file with several inputs rows that read as a dict by the
    signature's input names (tasks/named_inputs.py).

    The file ships with batch 1; the batch dimension is resized for speed and
    falls back to one sample at a time if the file does not allow resizing.

    Args:
        tflite: the TFLite file.
        x: the samples, read ``batch`` rows at a time (a lazy split is fine).
        num_threads: the interpreter's threads.
        batch: samples per invocation when the file can be resized.

    Returns:
        Float32 outputs, one row per sample of ``x`` (quantized outputs dequantized).

    Raises:
        TrialFailed: the file does not load, or ``x`` names an input it does not have.
    """
    try:
        interp = make_interpreter(tflite, num_threads)
        names = _output_names(interp)
        by_name = _input_indices(interp)
    except Exception as exc:  # noqa: BLE001 - a bad file fails to load in many ways
        raise TrialFailed(f"TFLite file does not load: {exc}") from exc
    interp, size = _allocate(interp, tflite, num_threads, batch)
    details = {detail["index"]: detail for detail in interp.get_input_details()}
    outputs: dict[int, list[np.ndarray]] = {index: [] for index in names}
    for start in range(0, len(x), size):
        real = _set_inputs(interp, x[start : start + size], by_name, details, size)
        interp.invoke()
        for detail in interp.get_output_details():
            if detail["index"] in outputs:
                values = _dequantize(interp.get_tensor(detail["index"]), detail)
                outputs[detail["index"]].append(values[:real])
    if len(names) == 1:
        return np.concatenate(next(iter(outputs.values())))
    return {names[index]: np.concatenate(parts) for index, parts in outputs.items()}


def _allocate(interp: Any, tflite: bytes, num_threads: int, batch: int) -> tuple[Any, int]:
    """The interpreter allocated for ``batch`` samples a run, else a new one for one at a time."""
    try:
        for detail in interp.get_input_details():
            interp.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]], strict=True)
        interp.allocate_tensors()
    except Exception:  # noqa: BLE001 - some files cannot be resized: run one at a time
        interp = make_interpreter(tflite, num_threads)
        interp.allocate_tensors()
        return interp, 1
    return interp, batch


def _set_inputs(
    interp: Any, chunk: Any, by_name: dict[str, int], details: dict[int, Any], size: int
) -> int:
    """Feed one chunk of samples, padded to ``size``; how many of them are real samples."""
    parts = chunk if isinstance(chunk, dict) else {"": chunk}
    real = 0
    for name, values in parts.items():
        if name not in by_name:
            raise TrialFailed(f"the TFLite file has no input {name!r} ({', '.join(by_name)})")
        detail = details[by_name[name]]
        values = _quantize(np.asarray(values), detail)
        real = len(values)
        if real < size:  # pad the last batch to the allocated size
            values = np.concatenate([values, np.repeat(values[-1:], size - real, axis=0)])
        interp.set_tensor(detail["index"], values)
    return real


def _input_indices(interp: Any) -> dict[str, int]:
    """Input name -> tensor index: the signature's names for a file with several inputs,
    ``""`` for the one input of a file with one (fed an array, whatever its name)."""
    details = interp.get_input_details()
    if len(details) == 1:
        return {"": details[0]["index"]}
    runner = interp.get_signature_runner()
    return {name: d["index"] for name, d in runner.get_input_details().items()}


def _output_names(interp: Any) -> dict[int, str]:
    """Output tensor index -> signature name (the first output alone, unnamed, for a
    file with one output, as before signatures mattered)."""
    details = interp.get_output_details()
    if len(details) == 1:
        return {details[0]["index"]: ""}
    runner = interp.get_signature_runner()
    return {d["index"]: name for name, d in runner.get_output_details().items()}


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    scale, zero = detail["quantization"]
    # An integer input without a scale is an id (an Embedding's), not a quantized value.
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.issubdtype(detail["dtype"], np.integer) and scale:
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)

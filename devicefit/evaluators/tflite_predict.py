"""Run a TFLite file over a data set on the host, batch by batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from devicefit.deploy.runtime import make_interpreter
from devicefit.errors import TrialFailed


def predict(tflite: bytes, x: np.ndarray, num_threads: int = 1, batch: int = 32) -> Any:
    """Outputs of the TFLite model for every sample of ``x``: one array, or for a file with
    several outputs a dict by their signature names (the Keras model's output names).

    The file ships with batch 1; the batch dimension is resized for speed and
    falls back to one sample at a time if the file does not allow resizing.
    """
    try:
        interp = make_interpreter(tflite, num_threads)
        inp = interp.get_input_details()[0]
        names = _output_names(interp)
    except Exception as exc:  # noqa: BLE001
        raise TrialFailed(f"TFLite file does not load: {exc}") from exc
    size = batch
    try:
        interp.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]], strict=True)
        interp.allocate_tensors()
    except Exception:  # noqa: BLE001 - some files cannot be resized: run one at a time
        interp = make_interpreter(tflite, num_threads)
        interp.allocate_tensors()
        size = 1
    inp = interp.get_input_details()[0]
    outputs: dict[int, list[np.ndarray]] = {index: [] for index in names}
    for start in range(0, len(x), size):
        chunk = _quantize(x[start : start + size], inp)
        real = len(chunk)
        if real < size:  # pad the last batch to the allocated size
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - real, axis=0)])
        interp.set_tensor(inp["index"], chunk)
        interp.invoke()
        for detail in interp.get_output_details():
            if detail["index"] in outputs:
                values = _dequantize(interp.get_tensor(detail["index"]), detail)
                outputs[detail["index"]].append(values[:real])
    if len(names) == 1:
        return np.concatenate(next(iter(outputs.values())))
    return {names[index]: np.concatenate(parts) for index, parts in outputs.items()}


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
    if np.issubdtype(dtype, np.integer):
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(detail["dtype"], np.integer):
        scale, zero = detail["quantization"]
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)

"""Run a TFLite file over a data set on the host, batch by batch."""

from __future__ import annotations

import numpy as np

from devicefit.deploy.runtime import make_interpreter
from devicefit.errors import TrialFailed


def predict(tflite: bytes, x: np.ndarray, num_threads: int = 1, batch: int = 32) -> np.ndarray:
    """Outputs of the TFLite model for every sample of ``x``.

    The file ships with batch 1; the batch dimension is resized for speed and
    falls back to one sample at a time if the file does not allow resizing.
    """
    try:
        interp = make_interpreter(tflite, num_threads)
        inp = interp.get_input_details()[0]
        out_index = interp.get_output_details()[0]["index"]
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
    outputs = []
    for start in range(0, len(x), size):
        chunk = _quantize(x[start : start + size], inp)
        real = len(chunk)
        if real < size:  # pad the last batch to the allocated size
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - real, axis=0)])
        interp.set_tensor(inp["index"], chunk)
        interp.invoke()
        out_detail = next(d for d in interp.get_output_details() if d["index"] == out_index)
        outputs.append(_dequantize(interp.get_tensor(out_index), out_detail)[:real])
    return np.concatenate(outputs)


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

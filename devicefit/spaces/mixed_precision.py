"""Mixed precision: a bit-width per layer, applied to the converted float file by
ai-edge-quantizer recipes.

Precisions, per layer:
- ``float``: left in float32 (the fallback for sensitive layers);
- ``w8`` / ``w4``: int8 / int4 weights, dequantized to float for the compute
  (smaller file; speed depends on the runtime);
- ``a8w8``: int8 weights and int8 activations, calibrated on training inputs;
- ``a16w8``: int8 weights and int16 activations (more accurate than a8w8);
- ``a8w4``: int4 weights and int8 activations (half a8w8's weight bytes, the same
  integer kernels where the runtime has int4 ones).

Each Keras layer's ops are found in the float file by kernel shape, in graph
order, and addressed by the exact name of their output tensor, so a recipe
never touches another layer's ops.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np

from devicefit.errors import TrialFailed
from devicefit.evaluators.tflite_ops import WeightedOp, weighted_ops
from devicefit.tasks.named_inputs import rows_of_one

PRECISIONS = ("float", "w8", "w4", "a8w8", "a16w8", "a8w4")
# What a per-layer study searches unless its ranges say otherwise: a8w4 came later, and a
# new default choice would change (and stop Optuna resuming) every older per-layer study.
SEARCHED_PRECISIONS = PRECISIONS[:-1]
CALIBRATION_SAMPLES = 64


def expected_kernels(layer: Any) -> list[tuple[str, tuple[int, ...]]]:
    """The (TFLite op, weight shape) a converted Keras layer turns into.

    Args:
        layer: a Keras layer.

    Returns:
        One (op kind, weight shape as the file stores it) per weighted op, in order; empty
        for a layer of another kind (a grouped Conv2D included).
    """
    import keras

    L = keras.layers
    weights = [tuple(w.shape) for w in layer.weights]
    if type(layer) is L.Conv2D and layer.groups == 1:
        kh, kw, cin, cout = weights[0]
        return [("CONV_2D", (cout, kh, kw, cin))]
    if type(layer) is L.DepthwiseConv2D:
        kh, kw, cin, mult = weights[0]
        return [("DEPTHWISE_CONV_2D", (1, kh, kw, cin * mult))]
    if type(layer) is L.SeparableConv2D:
        kh, kw, cin, mult = weights[0]
        _, _, mid, cout = weights[1]
        return [("DEPTHWISE_CONV_2D", (1, kh, kw, cin * mult)), ("CONV_2D", (cout, 1, 1, mid))]
    if type(layer) is L.Dense:
        cin, cout = weights[0]
        return [("FULLY_CONNECTED", (cout, cin))]
    if type(layer) is L.Conv2DTranspose:
        kh, kw, cout, cin = weights[0]
        return [("TRANSPOSE_CONV", (cout, kh, kw, cin))]
    return []


def locate_layers(model: Any, tflite: bytes) -> dict[str, list[WeightedOp]]:
    """Each weighted Keras layer's ops in the file: the first unclaimed op of the
    expected kind and weight shape, walking both in order.

    Args:
        model: the Keras model the file was converted from.
        tflite: the converted file.

    Returns:
        Layer name -> its ops (a SeparableConv2D has two); layers with none found left out.
    """
    ops = weighted_ops(tflite)
    claimed: set[int] = set()
    found: dict[str, list[WeightedOp]] = {}
    for layer in model.layers:
        mine = []
        for kind, shape in expected_kernels(layer):
            match = next(
                (
                    op
                    for op in ops
                    if op.index not in claimed and op.kind == kind and op.weight_shape == shape
                ),
                None,
            )
            if match is not None:
                claimed.add(match.index)
                mine.append(match)
        if mine:
            found[layer.name] = mine
    return found


def quantize_per_layer(
    model: Any, float_tflite: bytes, precisions: dict[str, str], calibration: np.ndarray
) -> tuple[bytes, list[str]]:
    """The float file with each layer's ops stored at its precision, and notes.

    Args: ``model`` (made ``float_tflite``), ``precisions`` (layer -> precision), ``calibration``
    (training inputs). Returns: (file, per-layer notes). Raises: ValueError, TrialFailed."""
    unknown = {p for p in precisions.values() if p not in PRECISIONS}
    if unknown:
        raise ValueError(f"unknown precision(s) {sorted(unknown)}; known: {', '.join(PRECISIONS)}")
    located = locate_layers(model, float_tflite)
    notes: list[str] = []
    wanted: dict[str, list[str]] = {}
    for layer, precision in precisions.items():
        if precision == "float":
            continue
        if layer not in located:
            notes.append(f"{layer}: no op of it found in the converted file; kept float")
            continue
        names = [op.output_name for op in located[layer]]
        wanted.setdefault(precision, []).extend(names)
        notes.append(f"{layer}: {precision}")
    if not wanted:
        return float_tflite, notes

    from ai_edge_quantizer import qtyping, quantizer

    every_op = qtyping.TFLOperationName.ALL_SUPPORTED
    qt = quantizer.Quantizer(bytearray(float_tflite))
    for precision, names in wanted.items():
        # The quantizer matches an op's "scope": its output tensor names, each followed
        # by ";" (so one name never matches another that merely starts with it).
        regex = "^(" + "|".join(re.escape(n) for n in names) + ");$"
        if precision in ("w8", "w4"):
            qt.add_weight_only_config(regex, every_op, num_bits=int(precision[1:]))
        else:
            activation_bits, weight_bits = (int(b) for b in precision[1:].split("w"))
            qt.add_static_config(
                regex, every_op, activation_num_bits=activation_bits, weight_num_bits=weight_bits
            )
    result = None
    if qt.need_calibration:
        with warnings.catch_warnings():  # its interpreter keeps every tensor, on purpose
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
            result = qt.calibrate(_calibration_data(float_tflite, calibration), num_threads=1)
    try:
        quantized = qt.quantize(result, enable_progress_report=False)
    except Exception as exc:  # noqa: BLE001 - the quantizer's own validation errors
        raise TrialFailed(f"mixed precision failed: {type(exc).__name__}: {exc}") from exc
    return bytes(quantized.quantized_model), notes


def _calibration_data(tflite: bytes, samples: np.ndarray) -> dict[str, list[dict[str, Any]]]:
    from devicefit.deploy.runtime import make_interpreter

    interpreter = make_interpreter(tflite, num_threads=1)
    signatures = interpreter.get_signature_list()
    key = next(iter(signatures))
    names = signatures[key]["inputs"]
    rows = rows_of_one(samples.astype(np.float32), CALIBRATION_SAMPLES)
    # Several inputs come by name already; one input takes the file's own input name.
    return {key: [row if isinstance(row, dict) else {names[0]: row} for row in rows]}

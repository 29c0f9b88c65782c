"""Quantization at conversion: float32, float16, dynamic-range int8, full-integer int8."""

from __future__ import annotations

from typing import Any

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import PER_LAYER, ConvertContext, ConvertTechnique, weighted_layers
from devicefit.spaces.convert import to_tflite
from devicefit.spaces.mixed_precision import (
    PRECISIONS,
    SEARCHED_PRECISIONS,
    expected_kernels,
    quantize_per_layer,
)
from devicefit.spaces.params import Choice
from devicefit.tasks.named_inputs import rows_of_one

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()

MODES = ("float32", "float16", "dynamic_int8", "int8")
SPARSE_MODES = ("float32", "float16")  # the file types XNNPACK runs sparse
CALIBRATION_SAMPLES = 100


class Quantization(ConvertTechnique):
    """How the weights and activations are stored in the shipped file.

    ``int8`` is full-integer: weights and activations int8, calibrated on
    training inputs (never the test split); the file keeps float32 inputs and
    outputs so its signature matches the original model.
    """

    name = "quantization"
    structural = False
    default_ranges = {"mode": Choice(MODES)}
    # Per-layer (or per-block) granularity is mixed precision: a bit-width per layer
    # (see mixed_precision.py) instead of one mode for the whole file.
    layer_params = {"precision": Choice(SEARCHED_PRECISIONS, extra=("a8w4",))}
    global_only = ("mode",)

    def identity_params(self) -> dict[str, Any]:
        return {"mode": "float32"}

    def strong_params(self) -> dict[str, Any]:
        return {"mode": "int8"}

    def layer_identity_params(self) -> dict[str, Any]:
        return {"precision": "float"}  # a layer left in float32

    def convert(self, model: keras.Model, params: dict[str, Any], ctx: ConvertContext) -> bytes:
        mode = params.get("mode", "float32")
        if mode not in MODES:
            raise ValueError(f"unknown quantization mode {mode!r}")
        precisions = {
            layer: values["precision"]
            for layer, values in params.get(PER_LAYER, {}).items()
            if "precision" in values
        }
        if precisions:  # mixed precision starts from the float32 file
            # Dense float32 file: the per-op quantizer does not take sparse tensors.
            dense = ConvertContext(ctx.input_shape, ctx.calibration, sparse=False)
            tflite = ctx.float_file or to_tflite(
                model, ctx.input_shape, lambda c: _configure(c, "float32", dense)
            )
            if all(p == "float" for p in precisions.values()):
                return tflite  # every layer kept float: nothing to quantize
            return quantize_per_layer(model, tflite, precisions, ctx.calibration)[0]
        return to_tflite(model, ctx.input_shape, lambda conv: _configure(conv, mode, ctx))

    def explain(self, model: keras.Model) -> dict[str, tuple[bool, str]]:
        """Every layer goes with the file's mode; layers with a kernel can also take
        their own precision (mixed precision)."""
        result = {}
        for layer in weighted_layers(model):
            if expected_kernels(layer):
                result[layer.name] = (
                    True,
                    f"file mode, or its own precision ({'/'.join(PRECISIONS)})",
                )
            else:
                result[layer.name] = (True, "file mode only (no kernel of its own)")
        return result

    def units(
        self, model: keras.Model, granularity: str, blocks: dict[str, list[str]]
    ) -> dict[str, list[str]]:
        # Only layers with their own kernel ops can carry a precision of their own.
        units = super().units(model, granularity, blocks)
        kernels = {layer.name for layer in weighted_layers(model) if expected_kernels(layer)}
        units = {unit: [n for n in layers if n in kernels] for unit, layers in units.items()}
        return {unit: layers for unit, layers in units.items() if layers}


def _configure(converter: Any, mode: str, ctx: ConvertContext) -> None:
    import tensorflow as tf

    # Sparse encoding: weights with enough zeros are stored as sparse tensors, the
    # layout XNNPACK's sparse 1x1-conv kernels can run (TFLite densifies them otherwise).
    # Only for float files: XNNPACK's sparse inference is float32/float16, and a
    # sparse tensor under dynamic-range int8 makes the XNNPACK delegate fail to prepare.
    sparse = ctx.sparse and mode in SPARSE_MODES
    sparsity = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
    if mode == "float32":
        converter.optimizations = sparsity
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT, *sparsity]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        rows = rows_of_one(ctx.calibration.astype(np.float32), CALIBRATION_SAMPLES)

        def representative() -> Any:
            """The calibration inputs, one at a time, as the converter reads them.

            Yields:
                Each row: a one-element list, or a dict by input name for several inputs.
            """
            for row in rows:  # several inputs: a dict by the signature's input names
                yield row if isinstance(row, dict) else [row]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

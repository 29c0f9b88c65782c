"""Quantization at conversion: float32, float16, dynamic-range int8, full-integer int8."""

from __future__ import annotations

from typing import Any

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import ConvertContext, Technique
from devicefit.spaces.convert import to_tflite
from devicefit.spaces.params import Choice

silence_tensorflow()

import keras  # noqa: E402

MODES = ("float32", "float16", "dynamic_int8", "int8")
CALIBRATION_SAMPLES = 100


class Quantization(Technique):
    """How the weights and activations are stored in the shipped file.

    ``int8`` is full-integer: weights and activations int8, calibrated on
    training inputs (never the test split); the file keeps float32 inputs and
    outputs so its signature matches the original model.
    """

    name = "quantization"
    stage = "convert"
    structural = False
    default_ranges = {"mode": Choice(MODES)}

    def identity_params(self) -> dict[str, Any]:
        return {"mode": "float32"}

    def strong_params(self) -> dict[str, Any]:
        return {"mode": "int8"}

    def convert(self, model: keras.Model, params: dict[str, Any], ctx: ConvertContext) -> bytes:
        mode = params.get("mode", "float32")
        if mode not in MODES:
            raise ValueError(f"unknown quantization mode {mode!r}")
        return to_tflite(model, ctx.input_shape, lambda conv: _configure(conv, mode, ctx))


def _configure(converter: Any, mode: str, ctx: ConvertContext) -> None:
    import tensorflow as tf

    if mode == "float32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        samples = ctx.calibration[:CALIBRATION_SAMPLES].astype(np.float32)

        def representative() -> Any:
            for sample in samples:
                yield [sample[None, ...]]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

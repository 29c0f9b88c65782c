"""A model's device profile: where its time goes on one device, per layer and block.

The model is converted as it would ship (float32 TFLite unless a file is given), measured on
the device with a per-op profile after the timed runs (``BenchmarkSpec.op_profile_runs``),
and every op's time traced back to its layer (``layer_times``).
"""

from __future__ import annotations

from typing import Any

from devicefit.errors import DeviceUnavailable
from devicefit.evaluators.base import BenchmarkSpec, DeviceEvaluator
from devicefit.evaluators.op_attribution import attribute, file_ops
from devicefit.spaces.convert import to_tflite
from devicefit.spaces.layer_times import LayerTimes, layer_times

PROFILE_RUNS = 200


def device_profile(
    model: Any,
    input_shape: tuple[int, ...],
    device: DeviceEvaluator,
    threads: int = 1,
    tflite: bytes | None = None,
) -> tuple[LayerTimes, float]:
    """(where the time goes, the measured median in ms) of ``model`` on ``device``.

    Raises DeviceUnavailable when the device measured the file but could not profile its
    ops (the reason it gave), TrialFailed when the file did not run there.
    """
    content = tflite if tflite is not None else to_tflite(model, input_shape)
    spec = BenchmarkSpec(threads=threads, op_profile_runs=PROFILE_RUNS)
    measurement = device.measure(content, spec)
    profile = measurement.op_profile
    if profile is None:
        why = measurement.unavailable.get("op_profile", "the device returned no op profile")
        raise DeviceUnavailable(f"{device.name}: no per-op profile: {why}")
    times = attribute(profile["ops"], file_ops(content))
    return layer_times(model, content, times, float(profile["run_ms"])), measurement.median_ms

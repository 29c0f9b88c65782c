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

    Args:
        model: the Keras model the file comes from; its layers name the times.
        input_shape: the shipped input shape, batch 1 included, to convert ``model`` at.
        device: the device to measure on.
        threads: the CPU threads the benchmark runs with.
        tflite: the file to measure; None converts ``model`` to a float32 file.

    Returns:
        The profiled runs' time per layer, block and channel group, and the median latency
        of the timed runs in ms.

    Raises:
        DeviceUnavailable: the device measured the file but could not profile its ops (the
            reason it gave).
        TrialFailed: the file did not run there (or ``model`` did not convert).
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

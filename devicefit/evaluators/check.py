"""``devicefit devices check``: is every device reachable, what is it, how fast is it?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devicefit.errors import DeviceUnavailable, TrialFailed
from devicefit.evaluators.base import BenchmarkSpec, Measurement
from devicefit.evaluators.devices import build_pools


@dataclass
class DeviceCheck:
    name: str  # the device name (pool)
    member: str
    info: dict[str, Any]
    measurement: Measurement | None
    error: str | None  # why the device is not usable


def reference_tflite() -> bytes:
    """A small fixed CNN (seeded weights): the same file on every device, so the
    reference medians compare devices.

    Returns:
        The float32 TFLite file, taking one 32x32x3 image.
    """
    import numpy as np

    from devicefit.quiet import silence_tensorflow

    silence_tensorflow()
    import keras

    from devicefit.spaces.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )
    model(np.zeros((1, 32, 32, 3), np.float32))
    return to_tflite(model, (1, 32, 32, 3))


def check_devices(specs: list[str], threads: int = 1) -> list[DeviceCheck]:
    """Ping, describe and time the reference file on every member of every pool.

    Args:
        specs: the ``--device`` values (``SPEC`` or ``NAME=SPEC``).
        threads: the threads each device runs the reference file with.

    Returns:
        One check per member, pools in the order given; a member that cannot be
        reached or fails to run the file has its ``error`` set (not raised).

    Raises:
        UsageError: a spec is not valid, its token file cannot be read, or Ray is not
            installed for a ``ray:`` device.
    """
    tflite = reference_tflite()
    spec = BenchmarkSpec(threads=threads, min_runs=50, min_seconds=1.0, timeout_s=120.0)
    checks = []
    for name, pool in build_pools(specs).items():
        for member in pool.members:
            info: dict[str, Any] = {}
            measurement, error = None, None
            try:
                member.ping()
                info = member.describe()
                measurement = member.measure(tflite, spec)
            except (DeviceUnavailable, TrialFailed) as exc:
                error = str(exc)
            checks.append(DeviceCheck(name, member.name, info, measurement, error))
    return checks


def print_checks(checks: list[DeviceCheck], console: Any) -> None:
    """Print the checks as one table: reachable, CPU / runtime, sensors, reference time.

    Args:
        checks: what :func:`check_devices` gave.
        console: the rich console to print on.
    """
    from rich.table import Table

    table = Table(title="devices")
    for column in ("device", "member", "reachable", "cpu / runtime", "sensors", "reference"):
        table.add_column(column)
    for c in checks:
        sensors = c.info.get("sensors") or {}
        readable = ", ".join(k for k, why in sensors.items() if why is None) or "none"
        what = " / ".join(
            str(v)
            for v in (c.info.get("cpu") or c.info.get("processor"), c.info.get("runtime"))
            if v
        )
        ref = (
            f"{c.measurement.median_ms:.3f} ms median, {c.measurement.count} runs"
            if c.measurement
            else "-"
        )
        reachable = "[green]yes[/]" if c.error is None else f"[red]no[/]: {c.error}"
        table.add_row(c.name, c.member, reachable, what or "-", readable, ref)
    console.print(table)

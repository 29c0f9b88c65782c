"""What the agent says about its device in ``GET /info`` (stdlib only)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from devicefit import __version__
from devicefit.deploy.sensors import Sensors


def cpu_model() -> str:
    """The CPU's marketing name; ARM boards put the board in ``Model``/``Hardware``.

    Returns:
        The first of ``model name``, ``Model``, ``Hardware`` or ``cpu model`` in
        /proc/cpuinfo; without those, the platform's processor or machine name.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine()


def memory_mb() -> float | None:
    """The device's total memory.

    Returns:
        MemTotal from /proc/meminfo in MB, or None where it cannot be read (not Linux).
    """
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def device_info(sensors: Sensors, limits: dict[str, Any]) -> dict[str, Any]:
    """The body of ``GET /info``: what the device is and what it can measure.

    Args:
        sensors: the agent's sensors, asked which readings this device has.
        limits: the agent's limits (``AgentConfig.limits()``), reported as they are.

    Returns:
        host, cpu, machine, cores, memory_mb, os, python, runtime (``none (why)`` when no
        LiteRT runtime imports), sensors (name -> None when readable, else why not),
        limits and the devicefit version.
    """
    from devicefit.deploy.runtime import interpreter_class

    try:
        runtime = interpreter_class()[1]
    except ImportError as exc:
        runtime = f"none ({exc})"
    return {
        "host": platform.node(),
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "memory_mb": memory_mb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "runtime": runtime,
        "sensors": sensors.available(),  # name -> None when readable, else why not
        "limits": limits,
        "devicefit": __version__,
    }

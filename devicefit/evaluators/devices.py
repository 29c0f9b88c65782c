"""``--device`` specs: which evaluator measures where, and which devices form a pool.

    local                       this machine, in a child process
    http://HOST:PORT[?...]      a `devicefit agent` (https:// with TLS)
    adb:SERIAL[?benchmark_model=PATH]   an Android device over adb
    ray:RESOURCE                a Ray node started with that custom resource

``NAME=SPEC`` names the device; specs sharing a NAME form one pool (one latency
objective, ``latency_NAME``). A spec without a name is named after its kind
(local, agent, adb, ray).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from devicefit.errors import UsageError
from devicefit.evaluators.base import DeviceEvaluator
from devicefit.evaluators.pool import DevicePool

_NAMED = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)=(.+)$")
KINDS = {"local": "local", "http": "agent", "https": "agent", "adb": "adb", "ray": "ray"}


def spec_kind(spec: str) -> str:
    """The device kind of a spec, or UsageError saying what a spec looks like.

    Args:
        spec: one ``--device`` spec, without its ``NAME=``.

    Returns:
        ``"local"``, ``"agent"``, ``"adb"`` or ``"ray"``.

    Raises:
        UsageError: the spec is of no known kind or lacks its host, port or name.
    """
    if spec == "local":
        return "local"
    scheme = spec.split(":", 1)[0] if ":" in spec else ""
    if scheme in ("http", "https"):
        parts = urlsplit(spec)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise UsageError(f"--device {spec!r}: expected {scheme}://HOST:PORT")
        return "agent"
    if scheme in ("adb", "ray"):
        if not spec.split(":", 1)[1].split("?", 1)[0]:
            raise UsageError(f"--device {spec!r}: expected {scheme}:NAME")
        return scheme
    raise UsageError(
        f"--device {spec!r}: unknown device; use local, http://HOST:PORT, adb:SERIAL or "
        "ray:RESOURCE, optionally as NAME=SPEC"
    )


def device_pools(specs: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """NAME -> member specs, in the order given.

    Args:
        specs: the ``--device`` values, ``SPEC`` or ``NAME=SPEC``; unnamed specs are
            named after their kind.

    Returns:
        Each pool's name and its members' specs (without ``NAME=``).

    Raises:
        UsageError: a spec is not valid, or one is given twice under one name.
    """
    pools: dict[str, list[str]] = {}
    for text in specs:
        match = _NAMED.match(text)
        name, spec = (match.group(1), match.group(2)) if match else (None, text)
        kind = spec_kind(spec)
        name = name or kind
        if spec in pools.get(name, []):
            raise UsageError(f"--device {text!r}: given twice")
        pools.setdefault(name, []).append(spec)
    return pools


def make_evaluator(spec: str, name: str | None = None) -> DeviceEvaluator:
    """The evaluator for one device spec; the device is not contacted yet.

    Args:
        spec: one ``--device`` spec, without its ``NAME=``.
        name: the name its measurements carry; None: one made from the spec.

    Returns:
        A local, agent, adb or Ray evaluator.

    Raises:
        UsageError: the spec or its options are not valid, or an agent's token file
            cannot be read.
    """
    kind = spec_kind(spec)
    if kind == "local":
        from devicefit.evaluators.local import LocalEvaluator

        return LocalEvaluator(name or "local")
    if kind == "agent":
        from devicefit.evaluators.agent_client import AgentEvaluator

        return AgentEvaluator(spec, name)
    if kind == "adb":
        from devicefit.evaluators.adb import AdbEvaluator

        return AdbEvaluator(spec, name)
    from devicefit.evaluators.ray_device import RayDeviceEvaluator

    return RayDeviceEvaluator(spec, name)


def build_pools(specs: tuple[str, ...] | list[str], wait_s: float = 120.0) -> dict[str, DevicePool]:
    """One DevicePool per device name; a member is named NAME@SPEC (without options), which
    each measurement stores, so every number can be traced to the device that gave it.

    Args:
        specs: the ``--device`` values, ``SPEC`` or ``NAME=SPEC``.
        wait_s: how long a pool whose members are all out waits for one to come back
            before it gives up with DeviceUnavailable.

    Returns:
        Pool name -> pool, in the order the names first appear.

    Raises:
        UsageError: a spec is not valid or given twice, or an agent's token file cannot
            be read.
    """
    pools = {}
    for name, members in device_pools(specs).items():
        evaluators = [make_evaluator(spec, f"{name}@{spec.split('?')[0]}") for spec in members]
        pools[name] = DevicePool(name, evaluators, wait_s=wait_s)
    return pools

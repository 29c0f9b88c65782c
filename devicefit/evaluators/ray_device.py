"""``ray:RESOURCE``: a device that is a Ray node started with a custom resource.

On the device: ``ray start --address HEAD:6379 --num-cpus 0 --resources '{"pi4": 1}'``
(``--num-cpus 0`` keeps trial work off it; devicefit must be installed there).
Each measurement is a Ray task that needs one unit of that resource, so it runs on
that node and never beside another measurement there. The node's id is stored with
the measurement. Spec: ``ray:RESOURCE[?address=HOST:PORT]`` (default: $RAY_ADDRESS,
else the cluster this machine belongs to).
"""

from __future__ import annotations

import os
import platform
import threading
from typing import Any
from urllib.parse import parse_qsl

from devicefit.errors import DeviceUnavailable, TrialFailed, UsageError
from devicefit.evaluators.base import (
    BenchmarkSpec,
    DeviceEvaluator,
    Measurement,
    Rounds,
    RoundsSpec,
)

_CONNECT = threading.Lock()


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--device ray:...: Ray is not installed (pip install devicefit[ray])"
        ) from None
    return ray


def connect(address: str | None) -> Any:
    """Join the Ray cluster once per process (quietly: no dashboard, no log echo).

    Args:
        address: the cluster's ``HOST:PORT``; None: ``$RAY_ADDRESS``, else the cluster
            this machine belongs to. Ignored once this process has joined one.

    Returns:
        The ``ray`` module, initialised.

    Raises:
        UsageError: Ray is not installed.
    """
    ray = _ray()
    with _CONNECT:
        if not ray.is_initialized():
            ray.init(
                address=address or os.environ.get("RAY_ADDRESS") or "auto",
                log_to_driver=False,
                include_dashboard=False,
                logging_level="ERROR",
            )
    return ray


def measure_here(tflite: bytes, spec: dict[str, Any]) -> dict[str, Any]:
    """Runs on the device node: the local evaluator there, plus which node it was.

    Args:
        tflite: the file's bytes.
        spec: a :class:`BenchmarkSpec` as ``to_dict`` gives it.

    Returns:
        The measurement as ``Measurement.to_dict`` gives it, with its Ray node id, and
        the node's host name under ``host``.

    Raises:
        TrialFailed: the file did not run there (Ray hands it to the caller).
    """
    import ray

    from devicefit.evaluators.local import LocalEvaluator

    measurement = LocalEvaluator().measure(tflite, BenchmarkSpec(**spec))
    measurement.node = ray.get_runtime_context().get_node_id()
    return {**measurement.to_dict(), "host": platform.node()}


def rounds_here(files: list[bytes], spec: dict[str, Any]) -> dict[str, Any]:
    """Runs on the device node: paired rounds by the local evaluator there.

    Args:
        files: the TFLite files' bytes.
        spec: a :class:`RoundsSpec` as ``to_dict`` gives it.

    Returns:
        The rounds as ``Rounds.to_dict`` gives them, with their Ray node id.

    Raises:
        TrialFailed: a file did not run there (Ray hands it to the caller).
    """
    import ray

    from devicefit.evaluators.local import LocalEvaluator

    rounds = LocalEvaluator().measure_rounds(files, RoundsSpec(**spec))
    rounds.node = ray.get_runtime_context().get_node_id()
    return rounds.to_dict()


class RayDeviceEvaluator(DeviceEvaluator):
    def __init__(self, spec: str, name: str | None = None) -> None:
        body = spec.split(":", 1)[1]
        resource, _, query = body.partition("?")
        options = dict(parse_qsl(query))
        if set(options) - {"address"}:
            raise UsageError(f"--device {spec!r}: the only option is address")
        self.resource = resource
        self.address = options.get("address")
        self.name = name or f"ray:{resource}"

    def ping(self) -> None:
        ray = connect(self.address)
        if ray.cluster_resources().get(self.resource, 0) < 1:
            raise DeviceUnavailable(
                f"{self.name}: no live Ray node offers the resource {self.resource!r}"
            )

    def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
        data = self._on_node(measure_here, (tflite, spec.to_dict()), 2 * spec.timeout_s + 60)
        data.pop("host", None)
        measurement = Measurement.from_dict(data)
        measurement.device = self.name
        return measurement

    def measure_rounds(self, files: list[bytes], spec: RoundsSpec) -> Rounds:
        """Every round in one Ray task on a node with this device's resource.

        Args:
            files: the TFLite files' bytes.
            spec: the rounds to run.

        Returns:
            The node's rounds, with this device's name.

        Raises:
            TrialFailed: a file did not run on the node.
            DeviceUnavailable: no live node offers the resource, no answer in time, or
                the node or its worker died.
            UsageError: Ray is not installed.
        """
        data = self._on_node(rounds_here, (files, spec.to_dict()), 2 * spec.timeout_s + 60)
        rounds = Rounds.from_dict(data)
        rounds.device = self.name
        return rounds

    def _on_node(self, function: Any, args: tuple, timeout: float) -> dict[str, Any]:
        """``function(*args)`` as a Ray task on a node with this device's resource.
        Waiting in line behind another client's measurement on the node is allowed."""
        ray = connect(self.address)
        self.ping()
        task = ray.remote(function).options(
            resources={self.resource: 1},
            num_cpus=0,  # the custom resource, not CPU slots, decides where and when
            max_retries=0,  # a retry belongs to the pool, which knows the other members
        )
        ref = task.remote(*args)
        try:
            return ray.get(ref, timeout=timeout)
        except TrialFailed as exc:  # the model failed on the device (Ray re-raises it)
            raise TrialFailed(f"{self.name}: {getattr(exc, 'cause', exc)}") from None
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            raise DeviceUnavailable(f"{self.name}: no answer within {timeout:.0f} s") from None
        except ray.exceptions.RayError as exc:  # node died, worker crashed, task lost
            raise DeviceUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from None

    def describe(self) -> dict[str, Any]:
        """The first live node that offers this device's resource.

        Returns:
            ``name``, ``spec``, the node's ``host`` and id, its CPU ``cores`` and
            ``memory_mb`` as Ray reports them.

        Raises:
            DeviceUnavailable: no live node offers the resource.
            UsageError: Ray is not installed.
        """
        ray = connect(self.address)
        nodes = [
            n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(self.resource)
        ]
        if not nodes:
            raise DeviceUnavailable(f"{self.name}: no live Ray node offers {self.resource!r}")
        node = nodes[0]
        return {
            "name": self.name,
            "spec": f"ray:{self.resource}",
            "host": node.get("NodeManagerHostname"),
            "node": node.get("NodeID"),
            "cores": node.get("Resources", {}).get("CPU"),
            "memory_mb": (node.get("Resources", {}).get("memory") or 0) / 2**20 or None,
        }

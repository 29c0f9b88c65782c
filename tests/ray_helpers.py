"""Real Ray clusters on loopback for tests: ``ray start`` with every port chosen here,
so two clusters (the session's and a test's own) can run side by side, and stopped
by killing only their own processes (``ray stop`` would stop every cluster)."""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_ports() -> list[str]:
    base = random.randrange(20000, 60000, 100)
    return [
        f"--node-manager-port={_free_port()}",
        f"--object-manager-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        f"--min-worker-port={base}",
        f"--max-worker-port={base + 99}",
    ]


@dataclass
class RayCluster:
    address: str
    temp_dir: str
    node_ports: list[str] = field(default_factory=list)  # each node's --node-manager-port

    def _processes(self, belongs: Callable[[str], bool]) -> list:  # noqa: ANN401
        """This cluster's processes: those with a command-line argument ``belongs`` accepts,
        and their children (Ray renames its workers "ray::IDLE", so only their raylet's
        arguments say whose they are)."""
        import psutil

        found = []
        for process in psutil.process_iter(["cmdline"]):
            arguments = process.info["cmdline"] or []
            if process.pid != os.getpid() and any(belongs(a) for a in arguments):
                found.append(process)
                found += process.children(recursive=True)
        return found

    def _kill(self, processes: list) -> None:  # noqa: ANN401
        import psutil

        for process in processes:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(processes, timeout=10)

    def kill_node(self, index: int) -> None:
        """Kill one node (its raylet and the workers under it), as if the machine died."""
        self._kill(self._processes(lambda argument: argument == self.node_ports[index]))

    def owns(self, argument: str) -> bool:
        """Whether a process with this command-line argument is one of this cluster's: it
        names the cluster's folder, or its GCS port as a whole argument or an address's
        port. Whole arguments only: another cluster's raylet takes numbers that can begin
        with this port's digits (--object_store_memory=...) or ports it was told of but
        does not listen on, which a later cluster can be given; matching them as
        substrings once killed the session's cluster at another cluster's stop."""
        port = self.address.rsplit(":", 1)[1]
        if argument == f"--gcs_server_port={port}" or argument.endswith(f":{port}"):
            return True
        return re.search(re.escape(self.temp_dir) + "(/|$)", argument) is not None

    def stop(self) -> None:
        import shutil

        self._kill(self._processes(self.owns))
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_cluster(workers: list[dict[str, float]], cpus: int = 1, tries: int = 3) -> RayCluster:
    """A head node and one worker node per entry of ``workers`` (its custom resources).

    ``ray start`` can fail on a loaded machine (its processes miss a start-up deadline) or
    when a port probed free was taken meanwhile: then the half-started cluster is stopped
    and it starts again on new ports, up to ``tries`` times; the last error shows Ray's
    own output."""
    for attempt in range(1, tries + 1):
        try:
            return _start_cluster(workers, cpus)
        except subprocess.CalledProcessError as exc:
            output = (exc.stderr or b"").decode(errors="replace")[-3000:]
            print(f"ray start failed (try {attempt} of {tries}):\n{output}", file=sys.stderr)
            if attempt == tries:
                raise RuntimeError(
                    f"ray start failed {tries} times; last output:\n{output}"
                ) from exc
    raise AssertionError("unreachable")


def _start_cluster(workers: list[dict[str, float]], cpus: int) -> RayCluster:
    """Its session folder is a fresh short path under /tmp: Ray puts Unix sockets there,
    and a socket path over 107 characters (pytest's tmp_path is long) fails to bind."""
    import tempfile

    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    port = _free_port()
    cluster = RayCluster(f"127.0.0.1:{port}", str(temp_dir))
    common = ["--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--disable-usage-stats"]
    try:
        for index, resources in enumerate([None, *workers]):
            ports = _node_ports()
            cluster.node_ports.append(ports[0])
            if index == 0:
                where = [
                    "--head",
                    f"--port={port}",
                    f"--temp-dir={temp_dir}",
                    "--include-dashboard=false",
                    f"--ray-client-server-port={_free_port()}",
                ]
            else:
                where = [f"--address={cluster.address}", "--resources", json.dumps(resources)]
            subprocess.run([RAY, "start", *where, *common, *ports], check=True, capture_output=True)
    except BaseException:
        cluster.stop()
        raise
    return cluster

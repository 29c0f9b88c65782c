"""The tests' Ray clusters: stopping one kills its own processes and no other cluster's."""

from __future__ import annotations

import pytest
from ray_helpers import RayCluster, start_cluster


def test_a_cluster_owns_only_arguments_that_name_its_port_or_folder_whole() -> None:
    cluster = RayCluster("127.0.0.1:35137", "/tmp/ray-abc")
    for argument in (
        "--gcs_server_port=35137",
        "--gcs-address=192.0.2.2:35137",
        "127.0.0.1:35137",
        "--temp_dir=/tmp/ray-abc",
        "--log_dir=/tmp/ray-abc/session_1/logs",
    ):
        assert cluster.owns(argument), argument
    for argument in (
        "--object_store_memory=3513712345",  # begins with the port's digits
        "--metrics-agent-port=35137",  # a port another cluster was told of
        "--gcs-address=192.0.2.2:351370",
        "--gcs_server_port=3513",
        "--temp_dir=/tmp/ray-abcd",
        "--log_dir=/tmp/ray-abcd/session_1/logs",
    ):
        assert not cluster.owns(argument), argument


def _daemons(cluster: RayCluster) -> set[int]:
    """The cluster's own processes (GCS, raylets, agents), not the workers they start and
    stop as they please."""
    import psutil

    return {
        process.pid
        for process in psutil.process_iter(["cmdline"])
        if any(cluster.owns(a) for a in process.info["cmdline"] or [])
    }


@pytest.mark.slow
def test_stopping_one_cluster_leaves_another_running() -> None:
    first, second = start_cluster([{}]), start_cluster([{}])
    try:
        kept = _daemons(second)
        assert len(kept) >= 4 and not kept & _daemons(first)  # GCS and a raylet per node
        first.stop()
        assert not first._processes(first.owns)
        assert _daemons(second) == kept
    finally:
        first.stop()
        second.stop()
    assert not second._processes(second.owns)

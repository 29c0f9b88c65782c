"""Talking to a real agent server in tests (the fixture that starts one is in conftest.py)."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

from devicefit.deploy.agent import AgentConfig, AgentServer

TOKEN = "test-token-0123456789abcdef"
FAST = "min_runs=3&min_seconds=0&warmup=1&warmup_seconds=0"


def start_agent_server(**options: Any) -> AgentServer:
    """An agent on a free loopback port, serving from a daemon thread of this process."""
    config = AgentConfig(**{"port": 0, "memory_mb": 1024, **options})
    server = AgentServer(config)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop_agent_server(server: AgentServer) -> None:
    server.shutdown()
    server.server_close()


def call(
    server: AgentServer,
    method: str,
    path: str,
    body: bytes | None = None,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=body, headers=sent)
    response = conn.getresponse()
    data = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, data


def spawn_agent(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()):  # noqa: ANN201
    """``devicefit agent`` as its own process (so a test can kill -9 it); (process, url).

    ``prefix`` runs it under another command, e.g. ``ip netns exec NAME``.
    """
    import os
    import subprocess
    import sys

    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "devicefit", "agent", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "devicefit agent serving on http://HOST:PORT (...)"
    if "serving on" not in line:
        process.kill()
        raise RuntimeError(f"agent did not start: {line!r}")
    return process, line.split("serving on ", 1)[1].split()[0]

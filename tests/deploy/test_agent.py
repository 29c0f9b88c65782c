"""The agent over real HTTP: its API, its limits and its security rules."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from agent_helpers import FAST, TOKEN, call

from devicefit.deploy.agent import AgentConfig, AgentConfigError, AgentServer


def test_health_and_info_describe_the_device(start_agent: Any) -> None:
    server = start_agent(token=TOKEN)
    status, health = call(server, "GET", "/health")
    assert status == 200 and health == {"status": "ok", "queue": 0}
    status, info = call(server, "GET", "/info")
    assert status == 200
    for key in ("host", "cpu", "cores", "memory_mb", "os", "runtime", "sensors", "limits"):
        assert info[key] is not None, key
    assert info["runtime"].startswith(("ai-edge-litert", "tflite-runtime", "tensorflow"))
    # Each sensor is either readable (None) or comes with the reason it is not.
    assert set(info["sensors"]) == {"energy", "temperature", "cpu_freq"}


def test_benchmark_measures_the_posted_file(start_agent: Any, tiny_tflite: bytes) -> None:
    server = start_agent(token=TOKEN)
    status, m = call(server, "POST", f"/benchmark?threads=2&{FAST}", tiny_tflite)
    assert status == 200, m
    assert m["threads"] == 2 and m["count"] >= 3
    assert 0 < m["min_ms"] <= m["median_ms"] <= m["p90_ms"]
    assert m["init_ms"] > 0 and m["first_inference_ms"] > 0 and m["peak_memory_mb"] > 0
    for key in ("energy_mj", "temperature_before_c", "temperature_after_c", "cpu_freq_mhz"):
        assert m[key] is not None or key in m["unavailable"], key


def test_no_token_and_wrong_token_get_401(start_agent: Any, tiny_tflite: bytes) -> None:
    server = start_agent(token=TOKEN)
    for token in (None, "wrong-token-0123456789abcdef", TOKEN[:-1], ""):
        for method, path in (("GET", "/health"), ("POST", f"/benchmark?{FAST}")):
            status, body = call(server, method, path, tiny_tflite, token=token)
            assert status == 401, (token, path)
            assert "token" in body["error"]
    basic = {"Authorization": f"Basic {TOKEN}"}
    assert call(server, "GET", "/info", token=None, headers=basic)[0] == 401


def test_upload_over_the_limit_gets_413_without_being_read(start_agent: Any) -> None:
    server = start_agent(token=TOKEN, max_upload_mb=1)
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    # Announce 2 MB and send nothing: the agent must answer from the headers alone.
    conn.putrequest("POST", f"/benchmark?{FAST}")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Content-Length", str(2 * 2**20))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert "limit" in json.loads(response.read())["error"]


def test_a_body_that_is_not_tflite_gets_400(start_agent: Any) -> None:
    server = start_agent(token=TOKEN)
    for body in (b"", b"hello", b"PK\x03\x04 a zip file, not a model", b"\x00" * 64):
        status, answer = call(server, "POST", f"/benchmark?{FAST}", body)
        assert status == 400 and "TFLite" in answer["error"]


def test_bad_benchmark_settings_get_400(start_agent: Any, tiny_tflite: bytes) -> None:
    server = start_agent(token=TOKEN)
    for query in ("threads=0", "threads=two", "min_runs=-1", "path=/etc/passwd"):
        status, answer = call(server, "POST", f"/benchmark?{query}", tiny_tflite)
        assert status == 400, query
        assert query.split("=")[0] in answer["error"]
    assert call(server, "GET", "/nowhere")[0] == 404


def test_refuses_a_non_loopback_address_without_a_token() -> None:
    with pytest.raises(AgentConfigError, match="token"):
        AgentServer(AgentConfig(host="0.0.0.0", port=0))
    done = subprocess.run(
        [sys.executable, "-m", "devicefit", "agent", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "--host 0.0.0.0" in done.stderr and "token" in done.stderr


def test_a_model_over_the_time_limit_fails_and_the_agent_keeps_serving(
    start_agent: Any, tiny_tflite: bytes
) -> None:
    server = start_agent(timeout_s=2.0)
    status, answer = call(server, "POST", "/benchmark?min_runs=1&min_seconds=30", tiny_tflite)
    assert status == 422 and "2 s limit" in answer["error"]
    status, m = call(server, "POST", f"/benchmark?{FAST}", tiny_tflite)
    assert status == 200 and m["count"] >= 3


def test_a_model_over_the_memory_limit_fails_and_the_agent_keeps_serving(
    start_agent: Any, tiny_tflite: bytes
) -> None:
    import keras

    from devicefit.spaces.convert import to_tflite

    # 1024x1024x64 float32 activations: 256 MB each, over a 400 MB address-space limit.
    model = keras.Sequential(
        [
            keras.Input((1024, 1024, 16)),
            keras.layers.Conv2D(64, 3, padding="same"),
            keras.layers.Conv2D(64, 3, padding="same"),
        ]
    )
    big = to_tflite(model, (1, 1024, 1024, 16))
    server = start_agent(memory_mb=400)
    status, answer = call(server, "POST", f"/benchmark?{FAST}", big)
    assert status == 422 and "400 MB" in answer["error"]
    assert call(server, "GET", "/health")[0] == 200
    assert call(server, "POST", f"/benchmark?{FAST}", tiny_tflite)[0] == 200


def test_concurrent_requests_are_measured_one_at_a_time(
    start_agent: Any, tiny_tflite: bytes
) -> None:
    server = start_agent()
    results: list[dict[str, Any]] = []
    query = "min_runs=1&min_seconds=0.5&warmup=1&warmup_seconds=0"

    def post() -> None:
        status, m = call(server, "POST", f"/benchmark?{query}", tiny_tflite)
        assert status == 200
        results.append(m)

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = sorted((m["measured_from"], m["measured_until"]) for m in results)
    assert len(spans) == 3
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end  # never two measurements on the device at once


def test_tls(start_agent: Any, tiny_tflite: bytes, tmp_path: Any) -> None:
    import ssl

    from no_skips import require_program

    require_program("openssl", "apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    server = start_agent(token=TOKEN, certfile=str(cert), keyfile=str(key))
    assert server.url.startswith("https://")
    # A client that connects and never starts the handshake must not block others.
    import socket

    silent = socket.create_connection((urlsplit(server.url).hostname, urlsplit(server.url).port))
    context = ssl.create_default_context(cafile=str(cert))
    parts = urlsplit(server.url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=30)
    conn.request("GET", "/health", headers={"Authorization": f"Bearer {TOKEN}"})
    assert conn.getresponse().status == 200
    with pytest.raises(ssl.SSLError):  # an unverified certificate is refused by the client
        strict = http.client.HTTPSConnection(
            parts.hostname, parts.port, context=ssl.create_default_context(), timeout=30
        )
        strict.request("GET", "/health")
        strict.getresponse()
    silent.close()


def test_a_full_queue_refuses_before_reading_the_upload(
    start_agent: Any, tiny_tflite: bytes
) -> None:
    server = start_agent(max_queued=1)
    slow = threading.Thread(
        target=call, args=(server, "POST", "/benchmark?min_runs=1&min_seconds=3", tiny_tflite)
    )
    slow.start()
    try:
        for _ in range(50):  # until the first measurement is in the queue
            if call(server, "GET", "/health")[1]["queue"] == 1:
                break
            time.sleep(0.05)
        parts = urlsplit(server.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.putrequest("POST", f"/benchmark?{FAST}")
        conn.putheader("Content-Length", str(len(tiny_tflite)))
        conn.endheaders()  # the body is never sent: the answer must come anyway
        response = conn.getresponse()
        assert response.status == 503 and "queued" in json.loads(response.read())["error"]
    finally:
        slow.join()


def test_rounds_interleave_several_posted_files(start_agent: Any, tiny_tflite: bytes) -> None:
    server = start_agent(token=TOKEN)
    sizes = f"{len(tiny_tflite)},{len(tiny_tflite)}"
    query = f"sizes={sizes}&rounds=3&block_seconds=0.01&block_min_runs=2"
    status, answer = call(server, "POST", f"/rounds?{query}", tiny_tflite * 2)
    assert status == 200, answer
    assert [len(blocks) for blocks in answer["block_ms"]] == [3, 3]
    assert answer["rounds"] == 3 and answer["node"]


def test_bad_rounds_requests_get_400(start_agent: Any, tiny_tflite: bytes) -> None:
    server = start_agent(token=TOKEN)
    size = len(tiny_tflite)
    cases = {
        "rounds=3": (tiny_tflite, "sizes"),  # no sizes
        f"sizes={size},x": (tiny_tflite, "sizes"),
        f"sizes={size},{size}": (tiny_tflite, "add up to"),  # body shorter than the sizes
        f"sizes={size},16": (tiny_tflite + b"\0" * 16, "file 2 is not a TFLite"),
        f"sizes={size}&rounds=0": (tiny_tflite, "rounds"),
        f"sizes={size}&min_runs=5": (tiny_tflite, "min_runs"),  # a /benchmark setting
    }
    for query, (body, message) in cases.items():
        status, answer = call(server, "POST", f"/rounds?{query}", body)
        assert status == 400 and message in answer["error"], (query, answer)

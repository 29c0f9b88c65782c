"""200 corrupted TFLite files thrown at a real agent: each gets an answer in time, and
the agent answers /health after every one."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from agent_helpers import FAST, TOKEN, call

VARIANTS = 200
TIME_LIMIT_S = 20.0


def corrupted(valid: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(valid)
    kind = rng.integers(4)
    if kind == 0:  # flip a few random bytes
        for i in rng.integers(8, len(data), size=int(rng.integers(1, 20))):
            data[i] = int(rng.integers(256))
    elif kind == 1:  # truncate
        data = data[: int(rng.integers(8, len(data)))]
    elif kind == 2:  # overwrite a run with garbage
        start = int(rng.integers(8, len(data) - 1))
        run = int(rng.integers(1, 200))
        data[start : start + run] = rng.bytes(len(data[start : start + run]))
    else:  # corrupt a 32-bit offset or length field somewhere (flatbuffer tables)
        at = int(rng.integers(8, len(data) - 4)) & ~3
        data[at : at + 4] = int(rng.integers(0, 2**32)).to_bytes(4, "little")
    return bytes(data)


@pytest.mark.slow
def test_corrupted_models_never_take_the_agent_down(start_agent: Any, tiny_tflite: bytes) -> None:
    server = start_agent(token=TOKEN, timeout_s=TIME_LIMIT_S, memory_mb=1024)
    rng = np.random.default_rng(2026)
    answers: dict[int, int] = {}
    for i in range(VARIANTS):
        body = corrupted(tiny_tflite, rng)
        began = time.monotonic()
        status, answer = call(server, "POST", f"/benchmark?{FAST}", body)
        took = time.monotonic() - began
        assert took < TIME_LIMIT_S + 10, f"variant {i} took {took:.1f} s"
        assert status in (200, 400, 422), (i, status, answer)
        if status == 200:
            assert answer["count"] >= 3
        else:
            assert answer["error"]
        answers[status] = answers.get(status, 0) + 1
        health_status, health = call(server, "GET", "/health")
        assert health_status == 200 and health["status"] == "ok", f"after variant {i}"
    # The corruption must really hit the runtime, not only the header check.
    assert answers.get(422, 0) >= 20, answers

"""`pip install .[agent]` in a fresh virtual environment: no TensorFlow, Optuna or Ray,
and `devicefit agent` starts from it and measures a file."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "keras", "optuna", "ray", "torch", "jax", "scikit-learn", "rich")


@pytest.mark.slow
def test_agent_extra_installs_light_and_serves(tmp_path: Path, tiny_tflite: bytes) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    subprocess.run(
        [*pip, "install", "-q", f"{REPO}[agent]"], check=True, capture_output=True, timeout=900
    )
    listed = subprocess.run([*pip, "list", "--format=json"], capture_output=True, text=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "devicefit" in installed and "ai-edge-litert" in installed
    assert not installed & set(HEAVY), installed & set(HEAVY)

    # The search commands say which extra they need instead of a traceback.
    search = subprocess.run(
        [str(venv / "bin" / "devicefit"), "search", "--task", "digits"],
        capture_output=True,
        text=True,
    )
    assert search.returncode == 2 and "devicefit[search]" in search.stderr

    agent = subprocess.Popen(
        [str(venv / "bin" / "devicefit"), "agent", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,  # not the repository: the installed package must be what runs
    )
    try:
        assert agent.stdout is not None
        line = agent.stdout.readline()
        assert "serving on" in line, line
        url = line.split("serving on ", 1)[1].split()[0]
        with urllib.request.urlopen(f"{url}/info", timeout=30) as response:
            info = json.loads(response.read())
        assert info["runtime"].startswith("ai-edge-litert")
        request = urllib.request.Request(
            f"{url}/benchmark?min_runs=3&min_seconds=0", tiny_tflite, method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            measurement = json.loads(response.read())
        assert measurement["count"] >= 3 and measurement["median_ms"] > 0
    finally:
        agent.kill()

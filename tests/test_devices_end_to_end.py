"""A digits search measured by agents over real HTTP: one device pool of two agents on
loopback, one agent acting as another host in its own network namespace (where the
machine allows; else a third loopback agent), and one pool member killed mid-study.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from agent_helpers import TOKEN, spawn_agent
from optuna.trial import TrialState
from studies import FAST_DIGITS

from devicefit.search import attrs

pytestmark = pytest.mark.slow


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture()
def other_host_agent() -> Iterator[str]:
    """An agent in a separate network namespace, reached over a veth pair at 10.231.N.2;
    a loopback agent where namespaces cannot be made (not root, no `ip`)."""
    name, n = f"dftest{os.getpid() % 10000}", os.getpid() % 250 + 1
    try:
        _run("ip", "netns", "add", name)
    except (OSError, subprocess.CalledProcessError):
        process, url = spawn_agent(env={"DEVICEFIT_TOKEN": TOKEN})
        yield url
        process.kill()
        return
    try:
        _run("ip", "link", "add", f"{name}a", "type", "veth", "peer", "name", f"{name}b")
        _run("ip", "link", "set", f"{name}b", "netns", name)
        _run("ip", "addr", "add", f"10.231.{n}.1/24", "dev", f"{name}a")
        _run("ip", "link", "set", f"{name}a", "up")
        inside = ("ip", "netns", "exec", name)
        _run(*inside, "ip", "addr", "add", f"10.231.{n}.2/24", "dev", f"{name}b")
        _run(*inside, "ip", "link", "set", f"{name}b", "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        # Not loopback: the agent refuses to start without a token.
        process, url = spawn_agent(
            "--host", f"10.231.{n}.2", env={"DEVICEFIT_TOKEN": TOKEN}, prefix=inside
        )
        assert url == f"http://10.231.{n}.2:{url.rsplit(':', 1)[1]}"
        yield url
        process.kill()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", f"{name}a"], capture_output=True)


def test_search_on_two_device_pools_survives_a_dead_agent(
    tmp_path: Path, other_host_agent: str
) -> None:
    first, first_url = spawn_agent(env={"DEVICEFIT_TOKEN": TOKEN})
    second, second_url = spawn_agent(env={"DEVICEFIT_TOKEN": TOKEN})
    config = tmp_path / "study.toml"
    config.write_text(FAST_DIGITS)
    folder = tmp_path / "results" / "pools"
    trials = 7
    search = subprocess.Popen(
        [sys.executable, "-m", "devicefit", "search", "--config", str(config)]
        + ["--study", "pools", "--results", str(tmp_path / "results")]
        + ["--trials", str(trials), "--device", f"pi={first_url}"]
        + ["--device", f"pi={second_url}", "--device", f"board={other_host_agent}"]
        # Memory as an objective on every device, and as a limit no candidate breaks.
        + ["--objective", "peak_memory", "--max-peak-memory", "4GB"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "DEVICEFIT_TOKEN": TOKEN},
    )
    try:
        # Kill one pool member once three trials are in, with the rest still to run.
        metrics_files = folder / attrs.TRIALS_DIR
        deadline = time.monotonic() + 900
        while len(list(metrics_files.glob("*/metrics.json"))) < 3:
            assert search.poll() is None, search.stdout.read() if search.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.5)
        second.kill()
        second.wait()
        killed_at = time.time()
        output, _ = search.communicate(timeout=900)
    finally:
        for process in (first, second, search):
            if process.poll() is None:
                process.kill()
    assert search.returncode == 0, output

    study = optuna.load_study(study_name="pools", storage=f"sqlite:///{folder / 'study.db'}")
    meta = study.user_attrs[attrs.STUDY_KEY]
    names = [o["name"] for o in meta["objectives"]][1:]
    assert names == ["latency_pi", "latency_board", "peak_memory_pi", "peak_memory_board"]
    assert len(study.directions) == 5
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == trials
    unavailable = [
        t
        for t in study.get_trials(states=(TrialState.FAIL,))
        if "device" in t.user_attrs.get(attrs.FAIL_REASON, "")
    ]
    assert not unavailable, [t.user_attrs[attrs.FAIL_REASON] for t in unavailable]
    members = {"pi": set(), "board": set()}
    for trial in complete:
        latency = trial.user_attrs[attrs.METRICS]["latency"]
        assert set(latency) == {"pi", "board"}
        assert trial.values[1] == latency["pi"]["median_ms"] > 0
        assert trial.values[2] == latency["board"]["median_ms"] > 0
        assert trial.values[3] == latency["pi"]["peak_memory_mb"] > 0
        assert trial.values[4] == latency["board"]["peak_memory_mb"] > 0
        worst = max(latency["pi"]["peak_memory_mb"], latency["board"]["peak_memory_mb"])
        assert trial.system_attrs["constraints:peak_memory_mb"] == worst - 4096
        for name, m in latency.items():
            members[name].add(m["device"])
        if latency["pi"]["device"] == f"pi@{second_url}":
            # Nothing from the dead agent: its measurements all ended before the kill.
            assert latency["pi"]["measured_until"] < killed_at
    # Both pool members shared the work before one died; the other device is one host.
    assert members["pi"] == {f"pi@{first_url}", f"pi@{second_url}"}
    assert members["board"] == {f"board@{other_host_agent}"}
    assert meta["devices"]["board"]["members"][0]["host"]


def test_cooldown_from_the_study_file_reaches_the_agent(tmp_path: Path) -> None:
    # The agent reads a stand-in /sys whose one thermal zone stays at 70 C: asked to cool
    # to 65 C for at most 1 s, it measures anyway and says why, with both numbers.
    zone = tmp_path / "sys" / "sys" / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("70000")
    agent, url = spawn_agent(
        env={"DEVICEFIT_TOKEN": TOKEN, "DEVICEFIT_SENSORS_ROOT": str(tmp_path / "sys")}
    )
    config = tmp_path / "study.toml"
    config.write_text(FAST_DIGITS + "[measure]\ncooldown_c = 65\ncooldown_timeout_s = 1\n")
    try:
        run = subprocess.run(
            [sys.executable, "-m", "devicefit", "search", "--config", str(config)]
            + ["--study", "cool", "--results", str(tmp_path / "results"), "--trials", "1"]
            + ["--device", f"pi={url}"],
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "DEVICEFIT_TOKEN": TOKEN},
        )
    finally:
        agent.kill()
    assert run.returncode == 0, run.stderr[-3000:]
    folder = tmp_path / "results" / "cool"
    study = optuna.load_study(study_name="cool", storage=f"sqlite:///{folder / 'study.db'}")
    (trial,) = study.get_trials(states=(TrialState.COMPLETE,))
    measured = trial.user_attrs[attrs.METRICS]["latency"]["pi"]
    assert measured["temperature_before_c"] == 70.0
    assert measured["cooldown_s"] is None
    assert measured["unavailable"]["cooldown_s"] == "still 70.0 C after 1 s (> 65.0 C)"

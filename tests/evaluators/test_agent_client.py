"""The agent client and device pools against real agent servers on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agent_helpers import TOKEN, stop_agent_server

from devicefit.errors import DeviceUnavailable, TrialFailed, UsageError
from devicefit.evaluators.agent_client import AgentEvaluator
from devicefit.evaluators.base import BenchmarkSpec
from devicefit.evaluators.devices import build_pools, device_pools
from devicefit.evaluators.local import LocalEvaluator
from devicefit.evaluators.pool import DevicePool
from devicefit.results.speedups import paired_speedup

QUICK = BenchmarkSpec(min_runs=3, min_seconds=0, warmup=1, warmup_seconds=0)


@pytest.fixture()
def medium_tflite() -> bytes:
    """About a millisecond per run: long enough for stable medians, short enough to repeat."""
    import keras

    from devicefit.spaces.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((48, 48, 16)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )
    return to_tflite(model, (1, 48, 48, 16))


@pytest.mark.exclusive  # compares latencies: nothing else may run meanwhile
def test_local_and_agent_medians_agree_within_5_percent(
    start_agent: Any, medium_tflite: bytes
) -> None:
    agent = AgentEvaluator(start_agent().url)
    local = LocalEvaluator()
    spec = BenchmarkSpec(min_runs=50, min_seconds=1.0)
    # Paired rounds, in alternating order, so the shared machine's drift hits both sides of
    # a round alike: the median of the per-round ratios, once, with no retry. Ten rounds, not
    # six: on a busy VM (Xeon, stop 30) single rounds strayed by up to 14%, and six ratios
    # left the median to two of them.
    runs: dict[str, list[float]] = {"local": [], "agent": []}
    for round_ in range(10):
        for side in ("local", "agent") if round_ % 2 == 0 else ("agent", "local"):
            device = local if side == "local" else agent
            runs[side].append(device.measure(medium_tflite, spec).median_ms)
    ratio = paired_speedup(runs["agent"], runs["local"]).median
    assert abs(ratio - 1) <= 0.05, runs


def test_agent_measurement_names_its_device_and_host(start_agent: Any, tiny_tflite: bytes) -> None:
    import platform

    server = start_agent()
    m = AgentEvaluator(server.url, name="pi@test").measure(tiny_tflite, QUICK)
    assert m.device == "pi@test" and m.node == platform.node()


def test_a_dead_agent_is_unavailable_not_the_models_fault(
    start_agent: Any, tiny_tflite: bytes
) -> None:
    server = start_agent()
    client = AgentEvaluator(server.url, retries=2, backoff_s=0.05)
    stop_agent_server(server)
    with pytest.raises(DeviceUnavailable, match="did not answer after 3 attempts"):
        client.measure(tiny_tflite, QUICK)
    with pytest.raises(DeviceUnavailable):
        client.ping()


def test_a_broken_model_fails_the_trial_not_the_device(start_agent: Any) -> None:
    client = AgentEvaluator(start_agent().url)
    with pytest.raises(TrialFailed, match="refused the model"):
        client.measure(b"1234TFL3" + b"\x00" * 100, QUICK)
    client.ping()  # still there


def test_a_file_over_the_upload_limit_fails_the_trial_not_the_device(
    start_agent: Any, medium_tflite: bytes
) -> None:
    limit_mb = len(medium_tflite) / 2 / 2**20
    client = AgentEvaluator(start_agent(max_upload_mb=limit_mb).url)
    with pytest.raises(TrialFailed, match="upload limit"):
        client.measure(medium_tflite, QUICK)
    client.ping()


def test_token_from_a_file_or_the_environment(
    start_agent: Any, tiny_tflite: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_agent(token=TOKEN)
    monkeypatch.delenv("DEVICEFIT_TOKEN", raising=False)
    with pytest.raises(DeviceUnavailable, match="rejected the token"):
        AgentEvaluator(server.url).measure(tiny_tflite, QUICK)
    (tmp_path / "token").write_text(TOKEN + "\n")
    assert (
        AgentEvaluator(f"{server.url}?token_file={tmp_path / 'token'}")
        .measure(tiny_tflite, QUICK)
        .count
        >= 3
    )
    monkeypatch.setenv("DEVICEFIT_TOKEN", TOKEN)
    assert AgentEvaluator(server.url).measure(tiny_tflite, QUICK).count >= 3
    with pytest.raises(UsageError, match="cannot read token file"):
        AgentEvaluator(f"{server.url}?token_file={tmp_path / 'missing'}")


def test_pool_moves_work_off_a_dead_member(start_agent: Any, tiny_tflite: bytes) -> None:
    first, second = start_agent(), start_agent()
    pool = DevicePool(
        "pi",
        [
            AgentEvaluator(first.url, "pi@a", retries=0),
            AgentEvaluator(second.url, "pi@b", retries=0),
        ],
        wait_s=1,
    )
    assert {pool.measure(tiny_tflite, QUICK).device for _ in range(4)} == {"pi@a", "pi@b"}
    stop_agent_server(first)
    measured_by = [pool.measure(tiny_tflite, QUICK).device for _ in range(4)]
    assert measured_by == ["pi@b"] * 4
    assert list(pool.dead) == [0] and "pi@a" in pool.dead[0]


def test_pool_with_no_member_left_gives_up_as_unavailable(
    start_agent: Any, tiny_tflite: bytes
) -> None:
    server = start_agent()
    pool = DevicePool("pi", [AgentEvaluator(server.url, retries=0)], wait_s=0.5, probe_every_s=0.1)
    stop_agent_server(server)
    with pytest.raises(DeviceUnavailable, match="no member answered"):
        pool.measure(tiny_tflite, QUICK)


def test_pool_takes_a_member_back_when_it_answers_again(tiny_tflite: bytes) -> None:
    class Flaky(LocalEvaluator):
        down = True

        def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Any:
            if self.down:
                raise DeviceUnavailable("unplugged")
            return super().measure(tflite, spec)

        def ping(self) -> None:
            self.down = False  # plugged back in by the time the pool probes

    pool = DevicePool("phone", [Flaky("phone@1")], wait_s=10, probe_every_s=0.05)
    assert pool.measure(tiny_tflite, QUICK).device == "phone@1"
    assert not pool.dead


def test_device_flags_group_into_pools() -> None:
    pools = device_pools(
        ["pi=http://10.0.0.2:8765", "pi=http://10.0.0.3:8765?token_file=t", "local"]
    )
    assert pools == {
        "pi": ["http://10.0.0.2:8765", "http://10.0.0.3:8765?token_file=t"],
        "local": ["local"],
    }
    built = build_pools(["local", "fast=local"])
    assert [m.name for m in built["fast"].members] == ["fast@local"]
    for bad in ("pi=ftp://x", "http://nohost", "adb:", "ray:", "pi=local pi", "pi=local=x"):
        with pytest.raises(UsageError, match="--device"):
            device_pools([bad])
    with pytest.raises(UsageError, match="given twice"):
        device_pools(["pi=local", "pi=local"])

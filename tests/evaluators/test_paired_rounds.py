"""Paired rounds on real devices (local, an agent over HTTP, a pool): a file that does twice
the work is reported as 2x, identical files as no faster; and the measuring loop notices
when another process shares its core."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

import pytest

from devicefit.deploy.bench import MAX_STEAL_PCT
from devicefit.evaluators.agent_client import AgentEvaluator
from devicefit.evaluators.base import BenchmarkSpec, RoundsSpec
from devicefit.evaluators.local import LocalEvaluator
from devicefit.evaluators.pool import DevicePool
from devicefit.results.speedups import paired_speedup


def _conv_chain(layers: int) -> bytes:
    """One 3x3 convolution (32 to 32 channels, 32x32) applied ``layers`` times: twice the
    layers is twice the work with the same working set. The layer is shared, so both files
    hold one 37 KB weight tensor and the same 128 KB activations: a chain of distinct layers
    doubled its weights too, and on the Xeon VM its ratio came out 2.07 (2.03-2.12) where the
    EPYC measured 2.00 (at 64x64, 512 KB activations, the EPYC gave 1.93-1.97): cache fit,
    most likely, rather than the measurement, set the answer. With the layer shared, 16
    pairings on the EPYC gave medians of 1.996-2.012, every interval within 1.98-2.03."""
    import keras

    from devicefit.spaces.convert import to_tflite

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 32))
    conv = keras.layers.Conv2D(32, 3, padding="same", activation="relu")
    x = inputs
    for _ in range(layers):
        x = conv(x)
    return to_tflite(keras.Model(inputs, x), (1, 32, 32, 32))


@pytest.fixture(scope="module")
def chains() -> tuple[bytes, bytes]:
    return _conv_chain(3), _conv_chain(6)


@pytest.mark.exclusive  # a trial training on the other core moves the rounds' ratios
def test_a_file_doing_twice_the_work_is_reported_as_2x(chains: tuple[bytes, bytes]) -> None:
    short, long = chains
    rounds = LocalEvaluator().measure_rounds([long, short], RoundsSpec(rounds=30))
    assert [len(b) for b in rounds.block_ms] == [30, 30]
    speedup = paired_speedup(rounds.block_ms[0], rounds.block_ms[1])
    assert 1.9 <= speedup.low <= speedup.median <= speedup.high <= 2.1, speedup
    assert speedup.faster


def _dense_head() -> bytes:
    """A memory-bound file (8 MB of Dense weights, as the digits head): where its buffers
    land in memory changes its speed by up to 2% for as long as an interpreter lives."""
    import keras

    from devicefit.spaces.convert import to_tflite

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4096,))
    return to_tflite(keras.Model(inputs, keras.layers.Dense(512)(inputs)), (1, 4096))


@pytest.mark.exclusive
def test_identical_files_get_intervals_around_1() -> None:
    """A 95% interval misses the truth one time in twenty by design, so this looks at six
    independent pairings of 40 rounds (20 left the centre 3% off on the EPYC VM, whose memory
    placement noise is larger): at least four must contain 1 (a method that measured two loads of
    one file as different files, as keeping interpreters across rounds does, fails all six;
    a sound one fails this check about once in 300 runs), and together they centre on 1."""
    file = _dense_head()
    speedups = [
        paired_speedup(
            *LocalEvaluator().measure_rounds([file, file], RoundsSpec(rounds=40)).block_ms
        )
        for _ in range(6)
    ]
    containing = [s for s in speedups if s.low <= 1.0 <= s.high]
    assert len(containing) >= 4, speedups
    assert abs(statistics.median(s.median for s in speedups) - 1.0) <= 0.01, speedups


@pytest.mark.exclusive
def test_an_agent_interleaves_the_files_itself(
    start_agent: Any, chains: tuple[bytes, bytes]
) -> None:
    short, long = chains
    agent = AgentEvaluator(start_agent().url, name="board")
    rounds = agent.measure_rounds([long, short], RoundsSpec(rounds=30))
    assert rounds.device == "board" and rounds.cores is not None
    speedup = paired_speedup(rounds.block_ms[0], rounds.block_ms[1])
    assert 1.9 <= speedup.low and speedup.high <= 2.1, speedup


def test_a_pool_runs_every_round_on_one_member(start_agent: Any, tiny_tflite: bytes) -> None:
    members = [AgentEvaluator(start_agent().url, name=f"m{i}") for i in range(2)]
    pool = DevicePool("boards", members)
    rounds = pool.measure_rounds([tiny_tflite, tiny_tflite], RoundsSpec(rounds=6))
    assert rounds.device in ("m0", "m1")  # one member, named; never a mix of both
    assert [len(b) for b in rounds.block_ms] == [6, 6]


def test_the_default_interleaves_block_by_block(tiny_tflite: bytes) -> None:
    """A device that takes one file at a time (adb) gets rounds of short measurements."""

    class OneAtATime(LocalEvaluator):
        order: list[int] = []

        def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Any:
            self.order.append(len(tflite))
            return super().measure(tflite, spec)

    a, b = tiny_tflite, tiny_tflite + b"\0" * 16  # told apart by length
    device = OneAtATime()
    rounds = super(LocalEvaluator, device).measure_rounds([a, b], RoundsSpec(rounds=4))
    assert [len(x) for x in rounds.block_ms] == [4, 4]
    assert device.order == [len(a), len(b), len(b), len(a), len(a), len(b), len(b), len(a)]


@pytest.mark.exclusive  # loads a core on purpose
def test_a_process_sharing_the_measuring_core_makes_it_measure_again(
    chains: tuple[bytes, bytes],
) -> None:
    import os

    last = sorted(os.sched_getaffinity(0))[-1]  # the core a one-thread measurement takes
    spinner = subprocess.Popen(
        ["taskset", "-c", str(last), sys.executable, "-c", "while True: pass"]
    )
    try:
        time.sleep(0.3)
        measured = LocalEvaluator().measure(chains[0], BenchmarkSpec(min_seconds=0.5))
    finally:
        spinner.kill()
        spinner.wait()
    assert measured.cores == [last]
    assert measured.core_shared_pct is not None and measured.core_shared_pct > 5.0
    assert measured.remeasured == 2 and measured.disturbed
    quiet = LocalEvaluator().measure(chains[0], BenchmarkSpec(min_seconds=0.5))
    assert quiet.core_shared_pct is not None and quiet.core_shared_pct < 5.0
    # Nothing else on the core: only the hypervisor may still have disturbed it (a shared
    # VM's steal, which this test cannot switch off), and then the measurement says so.
    assert quiet.steal_pct is not None
    assert quiet.disturbed == (quiet.steal_pct > MAX_STEAL_PCT)
    if not quiet.disturbed:
        assert quiet.remeasured == 0


@pytest.mark.exclusive  # loads a core on purpose
def test_rounds_a_process_disturbed_are_measured_again(chains: tuple[bytes, bytes]) -> None:
    import os

    last = sorted(os.sched_getaffinity(0))[-1]  # the core the one-thread rounds take
    spinner = subprocess.Popen(
        ["taskset", "-c", str(last), sys.executable, "-c", "while True: pass"]
    )
    try:
        time.sleep(0.3)
        spec = RoundsSpec(rounds=6, block_seconds=0.05)
        rounds = LocalEvaluator().measure_rounds([chains[0], chains[1]], spec)
    finally:
        spinner.kill()
        spinner.wait()
    # Every round was disturbed: measured again, at most half as many rounds more, and
    # still one block per file per asked round.
    assert rounds.rounds_redone == 3
    assert [len(b) for b in rounds.block_ms] == [6, 6]

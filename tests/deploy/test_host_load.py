"""What else used the CPU during a measurement, from /proc: computed right from the counters,
and seen in real readings when another process spins."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from devicefit.deploy.host_load import CpuCounters, load_between, read_counters


def _cpu(user: int = 0, system: int = 0, idle: int = 0, steal: int = 0) -> tuple[int, ...]:
    return (user, 0, system, idle, 0, 0, 0, steal)


def test_steal_and_other_processes_are_split_from_our_own_time() -> None:
    before = CpuCounters({0: _cpu(), 1: _cpu()}, own_ticks=0)
    # 100 ticks per CPU passed. CPU 1 (ours): 80 busy, 10 stolen; we used 70 of it.
    # CPU 0: 50 busy, all another process's.
    after = CpuCounters(
        {0: _cpu(user=50, idle=50), 1: _cpu(user=60, system=20, idle=10, steal=10)},
        own_ticks=70,
    )
    load = load_between(before, after, {1})
    assert load is not None
    assert load.steal_pct == pytest.approx(10.0)
    assert load.core_shared_pct == pytest.approx(10.0)  # 80 busy - 70 ours, of 100
    assert load.other_load_cpus == pytest.approx((130 - 70) / 100)  # 0.6 of a core


def test_unknown_counters_give_no_load() -> None:
    assert load_between(None, read_counters(), None) is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux /proc")
@pytest.mark.exclusive  # spins a core on purpose
def test_a_spinning_process_shows_as_other_load() -> None:
    spinner = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"]
    )
    try:
        time.sleep(0.3)  # started and spinning
        before = read_counters()
        time.sleep(1.0)
        load = load_between(before, read_counters(), None)
    finally:
        spinner.kill()
        spinner.wait()
    assert load is not None and load.other_load_cpus >= 0.7, load

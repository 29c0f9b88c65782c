"""What else used the CPU while a measurement ran, read from /proc (Linux; elsewhere None).

Two things make a run time lie: the hypervisor running another guest on our virtual CPU
(steal time) and other processes running on the core we measure on. Both are read as
counters before and after the timed runs; the measuring process's own CPU time is taken
out. Only the stdlib: it runs on devices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# /proc/stat columns (after the "cpuN" label), in clock ticks.
_USER, _NICE, _SYSTEM, _IDLE, _IOWAIT, _IRQ, _SOFTIRQ, _STEAL = range(8)


@dataclass(frozen=True)
class CpuCounters:
    per_cpu: dict[int, tuple[int, ...]]  # cpu -> the first 8 /proc/stat columns
    own_ticks: int  # this process's user + system time, all threads


@dataclass(frozen=True)
class HostLoad:
    steal_pct: float  # of the measuring CPUs' time, taken by the hypervisor for others
    core_shared_pct: float  # of the measuring CPUs' time, used by other processes
    other_load_cpus: float  # CPU time of other processes on any CPU, in CPUs (1.0: one core)

    def to_dict(self) -> dict[str, float]:
        """The load as JSON-ready numbers.

        Returns:
            ``steal_pct``, ``core_shared_pct`` and ``other_load_cpus``, rounded to 3 decimals.
        """
        return {
            "steal_pct": round(self.steal_pct, 3),
            "core_shared_pct": round(self.core_shared_pct, 3),
            "other_load_cpus": round(self.other_load_cpus, 3),
        }


def read_counters() -> CpuCounters | None:
    """Read the CPU counters now, to be compared with a later reading by ``load_between``.

    Returns:
        Each CPU's /proc/stat ticks and this process's own CPU ticks; None where /proc
        cannot be read (not Linux).
    """
    try:
        with open("/proc/stat") as handle:
            lines = handle.read().splitlines()
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    per_cpu = {}
    for line in lines:
        label, *values = line.split()
        if label.startswith("cpu") and label[3:].isdigit():
            per_cpu[int(label[3:])] = tuple(int(v) for v in values[:8])
    # utime and stime are fields 14 and 15 of /proc/PID/stat; 12 and 13 after the name.
    return CpuCounters(per_cpu, int(fields[11]) + int(fields[12]))


def load_between(
    before: CpuCounters | None, after: CpuCounters | None, cpus: set[int] | None
) -> HostLoad | None:
    """The load over the interval; ``cpus``: the CPUs the measurement ran on (None: all).

    Args:
        before: ``read_counters()`` when the timed runs began.
        after: ``read_counters()`` when they ended.
        cpus: the CPUs the measurement ran on (None or empty: all).

    Returns:
        Steal and other processes' share of the measuring CPUs, and other processes' load
        on all CPUs, with this process's own CPU time taken out; zeros when no time passed,
        None when either reading is None.
    """
    if before is None or after is None:
        return None
    mine = cpus if cpus else set(after.per_cpu)
    own = after.own_ticks - before.own_ticks
    total_all, busy_all = 0, 0
    total_mine, busy_mine, steal_mine = 0, 0, 0
    for cpu, values in after.per_cpu.items():
        old = before.per_cpu.get(cpu)
        if old is None:
            continue
        delta = [new - prior for new, prior in zip(values, old, strict=False)]
        total = sum(delta)
        busy = total - delta[_IDLE] - delta[_IOWAIT] - delta[_STEAL]
        total_all += total
        busy_all += busy
        if cpu in mine:
            total_mine += total
            busy_mine += busy
            steal_mine += delta[_STEAL]
    if total_all <= 0 or total_mine <= 0:
        return HostLoad(0.0, 0.0, 0.0)
    cpu_count = max(1, len(after.per_cpu))
    wall_ticks = total_all / cpu_count  # each CPU's counters advance with wall time
    return HostLoad(
        steal_pct=100.0 * steal_mine / total_mine,
        core_shared_pct=100.0 * max(0, busy_mine - own) / total_mine,
        other_load_cpus=max(0, busy_all - own) / wall_ticks,
    )


def clock_ticks() -> int:
    """The kernel's clock ticks per second, the unit of /proc/stat counters.

    Returns:
        ``SC_CLK_TCK``, or 100 (the usual value) where it cannot be asked.
    """
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100

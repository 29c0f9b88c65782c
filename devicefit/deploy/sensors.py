"""Energy, temperature and CPU frequency, read from Linux sysfs where the device exposes them.

Stdlib only (it runs on the device). Every reading is a value or None with the
reason, never 0: a board without RAPL or a battery simply has no energy number.
``root`` lets the same code read a copy of a device's /sys tree; ``DEVICEFIT_SENSORS_ROOT``
sets it for a whole agent (one in a container that sees the host's /sys mounted elsewhere).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "DEVICEFIT_SENSORS_ROOT"  # where the /sys tree is read from (default /)


@dataclass(frozen=True)
class Reading:
    value: float | None
    reason: str | None = None  # why value is None
    source: str | None = None  # which file(s) gave value


def _read_number(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


class Sensors:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root if root is not None else os.environ.get(ROOT_ENV) or "/")

    def _glob(self, pattern: str) -> list[Path]:
        return sorted(self.root.glob(pattern))

    # Energy -----------------------------------------------------------------

    def rapl_domains(self) -> list[Path]:
        """Top-level RAPL packages (intel-rapl:N, not their sub-zones intel-rapl:N:M),
        so package energy is not counted twice.

        Returns:
            The packages' powercap folders that have an ``energy_uj`` file, sorted; empty on
            devices without RAPL.
        """
        zones = self._glob("sys/class/powercap/intel-rapl:*")
        return [z for z in zones if z.name.count(":") == 1 and (z / "energy_uj").exists()]

    def energy_uj(self) -> Reading:
        """A cumulative energy counter in microjoules: RAPL packages, else the battery.

        Callers subtract two readings; RAPL counters wrap at ``max_energy_range_uj``,
        handled by ``energy_between``.

        Returns:
            The counter (summed over RAPL packages, or the discharging battery's stored energy)
            with its source, or None with the reason it cannot be read.
        """
        domains = self.rapl_domains()
        if domains:
            values = [_read_number(d / "energy_uj") for d in domains]
            readable = [v for v in values if v is not None]
            if len(readable) < len(values):
                return Reading(None, "RAPL energy_uj is not readable (needs root on most kernels)")
            return Reading(sum(readable), source="rapl:" + ",".join(d.name for d in domains))
        return self._battery_energy_uj()

    def _battery_energy_uj(self) -> Reading:
        batteries = [
            b
            for b in self._glob("sys/class/power_supply/*")
            if (b / "type").exists() and (b / "type").read_text().strip() == "Battery"
        ]
        if not batteries:
            return Reading(
                None, "no RAPL powercap domain and no battery in /sys/class/power_supply"
            )
        bat = batteries[0]
        status = (bat / "status").read_text().strip() if (bat / "status").exists() else ""
        if status and status != "Discharging":
            # On charger the battery gauge measures what flows in, not what the SoC uses.
            return Reading(None, f"battery {bat.name} is {status.lower()}, not discharging")
        energy = _read_number(bat / "energy_now")  # microwatt-hours
        if energy is not None:
            return Reading(energy * 3600.0, source=f"battery:{bat.name}:energy_now")
        charge = _read_number(bat / "charge_now")  # microamp-hours
        volts = _read_number(bat / "voltage_now")  # microvolts
        if charge is not None and volts is not None:
            return Reading(charge * volts / 1e6 * 3600.0, source=f"battery:{bat.name}:charge_now")
        return Reading(None, f"battery {bat.name} has no readable energy_now or charge_now")

    def energy_between(self, before: Reading, after: Reading) -> Reading:
        """Energy used between two counter readings, in millijoules.

        Args:
            before: ``energy_uj()`` before the runs.
            after: ``energy_uj()`` after them.

        Returns:
            The energy used, or None with a reason: either reading had none, the battery gauge
            did not move, or a RAPL counter wrapped and its range is unknown.
        """
        if before.value is None or after.value is None:
            return Reading(None, before.reason or after.reason)
        used = after.value - before.value
        if before.source and before.source.startswith("battery"):
            used = -used  # a battery's stored energy falls as it is used
            if used <= 0:
                return Reading(None, "battery gauge did not change during the run (too coarse)")
        elif used < 0:  # a RAPL counter wrapped around
            ranges = [_read_number(d / "max_energy_range_uj") for d in self.rapl_domains()]
            known = [r for r in ranges if r is not None]
            if len(known) < len(ranges):
                return Reading(None, "RAPL counter wrapped and its range is unknown")
            used += sum(known)
        return Reading(used / 1000.0, source=before.source)

    # Temperature and frequency ----------------------------------------------

    def temperature_c(self) -> Reading:
        """The hottest thermal zone, in degrees Celsius.

        Returns:
            The highest zone temperature, or None with the reason (no zones, none readable).
        """
        zones = self._glob("sys/class/thermal/thermal_zone*")
        if not zones:
            return Reading(None, "no /sys/class/thermal zones")
        temps = [t for z in zones if (t := _read_number(z / "temp")) is not None]
        if not temps:
            return Reading(None, "thermal zones exist but none is readable")
        # Most drivers report millidegrees; a few old ones whole degrees.
        hottest = max(t / 1000.0 if abs(t) > 200 else t for t in temps)
        return Reading(hottest, source=f"max of {len(temps)} thermal zones")

    def cpu_freq_mhz(self) -> Reading:
        """The highest current CPU frequency over all cores, in MHz.

        Returns:
            The frequency, or None with the reason (no cpufreq, as in most VMs, or unreadable).
        """
        files = self._glob("sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")
        if not files:
            return Reading(None, "no cpufreq in /sys/devices/system/cpu (VM or fixed clock)")
        freqs = [f for p in files if (f := _read_number(p)) is not None]
        if not freqs:
            return Reading(None, "cpufreq files are not readable")
        return Reading(max(freqs) / 1000.0, source=f"max of {len(freqs)} cores")

    def cool_down(self, threshold_c: float, timeout_s: float, poll_s: float = 1.0) -> Reading:
        """Wait until the hottest zone is at or under ``threshold_c``; seconds waited.

        None with a reason when there is no thermometer, or when it stayed hot past
        ``timeout_s`` (then the measurement goes ahead, and says so).

        Args:
            threshold_c: the temperature to wait for, in degrees Celsius.
            timeout_s: the longest wait, in seconds.
            poll_s: seconds between readings.

        Returns:
            The seconds waited, or None with the reason.
        """
        began = time.monotonic()
        while True:
            temp = self.temperature_c()
            waited = time.monotonic() - began
            if temp.value is None:
                return Reading(None, f"cool-down skipped: {temp.reason}")
            if temp.value <= threshold_c:
                return Reading(waited)
            if waited >= timeout_s:
                return Reading(
                    None, f"still {temp.value:.1f} C after {timeout_s:.0f} s (> {threshold_c} C)"
                )
            time.sleep(poll_s)

    def available(self) -> dict[str, str | None]:
        """Which sensors this device has: name -> None if readable, else the reason.

        Returns:
            ``energy``, ``temperature`` and ``cpu_freq``, each None when it can be read now,
            else why not.
        """
        readings = {
            "energy": self.energy_uj(),
            "temperature": self.temperature_c(),
            "cpu_freq": self.cpu_freq_mhz(),
        }
        return {name: (None if r.value is not None else r.reason) for name, r in readings.items()}

"""Sensor readings from a copy of a device's /sys tree (the layouts of real kernels)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devicefit.deploy.sensors import Sensors


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_rapl_sums_packages_not_their_subzones(tmp_path: Path) -> None:
    _write(tmp_path, "sys/class/powercap/intel-rapl:0/energy_uj", "1000000")
    _write(tmp_path, "sys/class/powercap/intel-rapl:1/energy_uj", "500000")
    _write(tmp_path, "sys/class/powercap/intel-rapl:0:0/energy_uj", "999999")  # core, inside 0
    reading = Sensors(tmp_path).energy_uj()
    assert reading.value == 1_500_000
    assert reading.source == "rapl:intel-rapl:0,intel-rapl:1"


def test_rapl_wraparound_uses_the_counter_range(tmp_path: Path) -> None:
    sensors = Sensors(tmp_path)
    _write(tmp_path, "sys/class/powercap/intel-rapl:0/max_energy_range_uj", "1000000")
    _write(tmp_path, "sys/class/powercap/intel-rapl:0/energy_uj", "999000")
    before = sensors.energy_uj()
    _write(tmp_path, "sys/class/powercap/intel-rapl:0/energy_uj", "1000")
    used = sensors.energy_between(before, sensors.energy_uj())
    assert used.value == pytest.approx(2.0)  # 2000 uJ = 2 mJ


def test_discharging_battery_energy_falls_as_it_is_used(tmp_path: Path) -> None:
    sensors = Sensors(tmp_path)
    _write(tmp_path, "sys/class/power_supply/BAT0/type", "Battery")
    _write(tmp_path, "sys/class/power_supply/BAT0/status", "Discharging")
    _write(tmp_path, "sys/class/power_supply/BAT0/charge_now", "3000000")  # uAh
    _write(tmp_path, "sys/class/power_supply/BAT0/voltage_now", "4000000")  # uV
    before = sensors.energy_uj()
    _write(tmp_path, "sys/class/power_supply/BAT0/charge_now", "2999999")
    used = sensors.energy_between(before, sensors.energy_uj())
    # 1 uAh at 4 V = 4 uWh = 14.4 mJ
    assert used.value == pytest.approx(14.4)


def test_charging_battery_gives_no_energy_and_says_why(tmp_path: Path) -> None:
    _write(tmp_path, "sys/class/power_supply/BAT0/type", "Battery")
    _write(tmp_path, "sys/class/power_supply/BAT0/status", "Charging")
    _write(tmp_path, "sys/class/power_supply/BAT0/energy_now", "100")
    reading = Sensors(tmp_path).energy_uj()
    assert reading.value is None and "charging" in (reading.reason or "")


def test_temperature_is_the_hottest_zone_in_celsius(tmp_path: Path) -> None:
    _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "45000")
    _write(tmp_path, "sys/class/thermal/thermal_zone1/temp", "61500")
    _write(tmp_path, "sys/class/thermal/thermal_zone2/temp", "garbage")
    assert Sensors(tmp_path).temperature_c().value == pytest.approx(61.5)


def test_cpu_frequency_is_the_fastest_core_in_mhz(tmp_path: Path) -> None:
    _write(tmp_path, "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "600000")
    _write(tmp_path, "sys/devices/system/cpu/cpu3/cpufreq/scaling_cur_freq", "1800000")
    assert Sensors(tmp_path).cpu_freq_mhz().value == pytest.approx(1800.0)


def test_nothing_readable_gives_none_with_reasons(tmp_path: Path) -> None:
    available = Sensors(tmp_path).available()
    assert set(available) == {"energy", "temperature", "cpu_freq"}
    assert all(reason for reason in available.values())


def test_cool_down_waits_until_under_the_threshold(tmp_path: Path) -> None:
    import threading

    _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "80000")
    timer = threading.Timer(
        0.3, lambda: _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "50000")
    )
    timer.start()
    waited = Sensors(tmp_path).cool_down(60.0, timeout_s=10.0, poll_s=0.05)
    timer.join()
    assert waited.value is not None and 0.25 <= waited.value < 5.0


def test_cool_down_gives_up_after_its_timeout(tmp_path: Path) -> None:
    _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "80000")
    waited = Sensors(tmp_path).cool_down(60.0, timeout_s=0.2, poll_s=0.05)
    assert waited.value is None and "80.0 C" in (waited.reason or "")


def test_benchmark_reports_sensor_readings_from_the_device(
    tmp_path: Path, tiny_tflite: bytes
) -> None:
    from devicefit.deploy.bench import benchmark

    _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "42000")
    _write(tmp_path, "sys/class/powercap/intel-rapl:0/energy_uj", "5")
    spec = {"min_runs": 3, "min_seconds": 0, "cooldown_c": 50}
    result = benchmark(tiny_tflite, spec, Sensors(tmp_path))
    assert result["temperature_before_c"] == result["temperature_after_c"] == 42.0
    assert result["cooldown_s"] is not None
    # A RAPL counter that never moved: 0 mJ is a real reading here, not a placeholder.
    assert result["energy_mj"] == 0.0 and result["energy_source"] == "rapl:intel-rapl:0"
    assert "cpu_freq_mhz" in result["unavailable"]


def test_the_sensors_root_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "39000")
    monkeypatch.setenv("DEVICEFIT_SENSORS_ROOT", str(tmp_path))
    assert Sensors().temperature_c().value == 39.0
    assert Sensors("/nonexistent").temperature_c().value is None  # an explicit root wins

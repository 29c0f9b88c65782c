"""`devicefit devices check`: info, reachability and a reference measurement per device."""

from __future__ import annotations

from typing import Any

import pytest

from devicefit.cli import main


@pytest.fixture(autouse=True)
def _wide_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # whole cells, whatever the runner's terminal


def test_check_reports_each_device_and_fails_on_an_unreachable_one(
    start_agent: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_agent()
    code = main(
        ["devices", "check", "--device", f"pi={server.url}", "--device", "gone=http://127.0.0.1:9"]
        + ["--device", "local"]
    )
    out = capsys.readouterr().out
    assert code == 1  # one device did not answer
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "yes" in rows["pi"] and "ms median" in rows["pi"]
    assert "yes" in rows["local"] and "ms median" in rows["local"]
    assert "no" in rows["gone"]


def test_check_of_reachable_devices_succeeds(
    start_agent: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["devices", "check", "--device", f"pi={start_agent().url}"]) == 0
    assert "ms median" in capsys.readouterr().out

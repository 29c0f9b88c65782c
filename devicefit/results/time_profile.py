"""The report's "Where the time goes": each layer's share of the measured time on a device
beside its share of the MACs, from the study's ``device_profile.json`` (written when the
search starts: the float32 and int8 files of the untouched model, profiled op by op)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from devicefit.results.records import StudyRecord
from devicefit.results.trial_detail import original_layer_macs
from devicefit.search.device_profiles import read_device_profiles


def device_profiles(record: StudyRecord) -> dict[str, Any] | None:
    """The study's device_profile.json (search/device_profiles.py, ``read_device_profiles``).

    Args:
        record: the study; its folder is read.

    Returns:
        Device -> its files' per-layer profiles, or None when the study has none.
    """
    return read_device_profiles(Path(record.folder))


def share_rows(profile: dict[str, Any], macs: dict[str, int]) -> list[tuple[str, float, float]]:
    """(layer or unmapped op, share of the profiled time, share of the MACs), by time.

    Args:
        profile: one file's profile on one device: ms per layer and per unmapped op.
        macs: the untouched model's MACs per layer.

    Returns:
        One row per layer and unmapped op, shares as fractions of 1, largest time first.
    """
    total = sum(profile["layers"].values()) + sum(profile["unmapped"].values()) or 1.0
    total_macs = sum(macs.values()) or 1
    rows = [(n, ms / total, macs.get(n, 0) / total_macs) for n, ms in profile["layers"].items()]
    rows += [(f"unmapped: {n}", ms / total, 0.0) for n, ms in profile["unmapped"].items()]
    return sorted(rows, key=lambda r: -r[1])


def time_profile_figure(rows: list[tuple[str, float, float]], title: str) -> Any:
    """Bar chart of each layer's share of the time beside its share of the MACs.

    Args:
        rows: ``share_rows(...)``, largest first.
        title: the chart's title.

    Returns:
        The plotly figure, the largest share on top.
    """
    import plotly.graph_objects as go

    names = [r[0] for r in rows][::-1]  # the largest share on top
    fig = go.Figure()
    fig.add_bar(y=names, x=[r[1] * 100 for r in rows][::-1], orientation="h", name="measured time")
    fig.add_bar(y=names, x=[r[2] * 100 for r in rows][::-1], orientation="h", name="MACs")
    fig.update_layout(
        title=title,
        barmode="group",
        xaxis_title="share (%)",
        height=max(260, 40 + 28 * len(rows)),
        margin={"l": 10, "r": 10, "t": 40, "b": 40},
        legend={"orientation": "h"},
    )
    return fig


def time_profile_section(record: StudyRecord, plot_div: Any) -> str:
    """The report's "Where the time goes" section, one chart per device.

    Args:
        record: the study.
        plot_div: turns a figure and an element id into HTML (``report_html.plot_div``).

    Returns:
        The HTML section; a one-line notice when the study has no device profile, and per
        device why it has none when its float32 file was not profiled.
    """
    profiles = device_profiles(record)
    head = "<section id='time-profile'><h2>Where the time goes</h2>"
    if not profiles:
        return head + "<p>No device profile in this study.</p></section>"
    macs = original_layer_macs(record)
    parts = [
        head,
        "<p class='note'>Each layer's share of the measured time of the untouched model's "
        "float32 file (LiteRT's per-op profile, 200 warm runs) beside its share of the MACs. "
        "Ops no layer made are shown as unmapped.</p>",
    ]
    for i, (device, files) in enumerate(sorted(profiles.items())):
        profile = files.get("float32") or {}
        if "layers" not in profile:
            why = profile.get("unavailable") or files.get("unavailable") or "no float32 profile"
            parts.append(f"<p>{escape(device)}: no profile: {escape(str(why))}</p>")
            continue
        rows = share_rows(profile, macs)
        ops_ms = sum(profile["layers"].values()) + sum(profile["unmapped"].values())
        covered = f"{ops_ms / profile['run_ms']:.0%}" if profile.get("run_ms") else "n/a"
        title = (
            f"{device}: float32, median {profile['median_ms']:.3f} ms; in the profiled runs "
            f"({profile.get('run_ms') or 0:.3f} ms each) the ops took {covered}"
        )
        parts.append(plot_div(time_profile_figure(rows, title), f"time-profile-plot-{i}"))
    return "".join(parts) + "</section>"

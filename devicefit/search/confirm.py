"""Paired confirmation of what a report claims.

Measurements taken minutes apart on a shared machine drift (the host's other tenants, its
clock), by more than many of the gains a search competes for. So the claims a report makes
are measured again, together: on each device, the front members, the float32 baseline and
the best peer recipe (the float16/int8 baselines and one-technique recipes) are timed in
interleaved rounds (A B C, B C A, ...), and every speed-up is the median of the per-round
ratios, with a distribution-free 95% interval. "Faster" is said only when the interval
excludes 1.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from devicefit.evaluators.base import DeviceEvaluator, RoundsSpec
from devicefit.results.pareto import best_recipe, float32_baseline, pareto_front
from devicefit.results.records import StudyRecord
from devicefit.results.speedups import paired_speedup
from devicefit.search import attrs

ROUNDS = 30


def confirmation_trials(record: StudyRecord) -> tuple[int | None, int | None, list[int]]:
    """The float32 baseline, the best peer recipe (by stored latency) and the front members
    a confirmation measures (trial numbers).

    Args:
        record: the study's loaded record.

    Returns:
        (float32 baseline, best peer recipe, front members) as trial numbers; None for a
        baseline or peer the study does not have.
    """
    base = float32_baseline(record)
    peer = best_recipe(record)
    front = [t.number for t in pareto_front(record)]
    return (base.number if base else None, peer.number if peer else None, front)


def confirm(
    record: StudyRecord,
    devices: Mapping[str, DeviceEvaluator],
    threads: int,
    console: Console,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Measure the report's claims in paired rounds on every device; what the study stores
    under ``confirmed`` (see search/attrs.py). Raises what a device raises."""
    base, peer, front = confirmation_trials(record)
    numbers = list(dict.fromkeys(n for n in (base, peer, *front) if n is not None))
    files = [_file(record.folder, n) for n in numbers]
    result: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": rounds,
        "float32": base,
        "peer": peer,
        "trials": numbers,
        "devices": {},
    }
    if len(numbers) < 2:
        return result
    for name, device in devices.items():
        with console.status(
            f"confirming on {name}: {rounds} paired rounds of {len(files)} files "
            f"(trials {', '.join(f'#{n}' for n in numbers)})"
        ):
            measured = device.measure_rounds(files, RoundsSpec(threads=threads, rounds=rounds))
        blocks = dict(zip(numbers, measured.block_ms, strict=True))
        entry: dict[str, Any] = {
            "measured_on": measured.device or name,
            "node": measured.node,
            "median_ms": {str(n): statistics.median(b) for n, b in blocks.items()},
            "vs_float32": {},
            "vs_peer": {},
            "steal_pct": measured.steal_pct,
            "other_load_cpus": measured.other_load_cpus,
        }
        for number in numbers:
            if base is not None and number != base:
                entry["vs_float32"][str(number)] = paired_speedup(
                    blocks[base], blocks[number]
                ).to_dict()
            if peer is not None and number != peer:
                entry["vs_peer"][str(number)] = paired_speedup(
                    blocks[peer], blocks[number]
                ).to_dict()
        result["devices"][name] = entry
    return result


def confirm_study(
    study: Any,
    record: StudyRecord,
    devices: Mapping[str, DeviceEvaluator],
    threads: int,
    console: Console,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """``confirm``, stored in the study (so every report shows it).

    Args:
        study: the Optuna study the result is stored in (``set_study_info``).
        record: the study's loaded record, whose trial files are measured.
        devices: device name -> evaluator, each measured in turn.
        threads: the threads each file runs on.
        console: where each device's progress is shown.
        rounds: the paired rounds per device.

    Returns:
        What ``confirm`` returns, as stored under ``confirmed``.
    """
    from devicefit.search.study import set_study_info

    result = confirm(record, devices, threads, console, rounds)
    set_study_info(study, **{attrs.CONFIRMED: result})
    return result


def _file(folder: Path, number: int) -> bytes:
    path = folder / attrs.TRIALS_DIR / str(number) / "model.tflite"
    return path.read_bytes()


def confirm_folder(
    folder: Path, storage: str | None, console: Console, rounds: int | None = None
) -> StudyRecord:
    """``devicefit report --confirm``: the study's own devices, the study's threads; the
    record with the confirmation in it.

    Args:
        folder: the study's results folder.
        storage: its storage URL (None: the study's own).
        console: where each device's progress is shown.
        rounds: the paired rounds per device (None: ``ROUNDS``).

    Returns:
        The study's record, loaded again with the confirmation stored.
    """
    from devicefit.config import config_from_stored
    from devicefit.evaluators.devices import build_pools
    from devicefit.results.records import load_study_record, study_record
    from devicefit.search.study import open_study, read_study_file

    stored = read_study_file(folder)
    config = config_from_stored(stored["config"], f"{folder}/{attrs.STUDY_FILE}")
    record = load_study_record(folder, storage)
    study = open_study(folder, storage or record.storage, config)
    devices = build_pools(config.devices)
    confirm_study(study, record, devices, config.threads, console, rounds or ROUNDS)
    return study_record(study, folder, record.storage)

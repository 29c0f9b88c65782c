"""Reports treat byte-identical files as one candidate, and claim speed-ups only from paired
rounds whose interval excludes 1."""

from __future__ import annotations

from typing import Any

from devicefit.results.hypervolume import reference_point
from devicefit.results.pareto import SAME_FILE, pareto_front, status
from devicefit.results.records import load_study_record
from devicefit.results.table import front_rows, headline, recipe_line
from devicefit.search import attrs
from devicefit.search.study import set_study_info


def _with_duplicate_pick(make_study: Any) -> Any:
    """float32 at 2.0 ms; the int8 baseline and a searched trial that made the same file,
    measured at 0.45 and 0.31 ms (one noisy measurement each)."""
    fake = make_study()
    fake.add(97.0, 2.0, baseline="float32", sha="f32")
    fake.add(96.9, 0.45, baseline="int8", sha="int8-file")
    fake.add(96.9, 0.31, sha="int8-file")
    return fake


def test_the_same_file_is_one_candidate_with_its_measurements_pooled(make_study: Any) -> None:
    fake = _with_duplicate_pick(make_study)
    record = load_study_record(fake.folder)
    baseline, later = record.trial(1), record.trial(2)
    assert later.same_as == 1 and baseline.same_as is None
    front = pareto_front(record)
    assert [t.number for t in front] == [0, 1]  # float32, and the file once, not twice
    assert status(record, later, {t.number for t in front}) == SAME_FILE
    latency = record.latency_objectives[0]
    # median of the two measurements, for both trials alike
    assert baseline.latency_median(latency) == later.latency_median(latency) == 0.38
    assert "median of 2 measurements" in front_rows(record, front).rows[0][3]


def test_a_pick_that_made_the_recipes_file_is_no_faster_than_it(make_study: Any) -> None:
    """The issue's case: a searched trial made the int8 baseline's very file; its single
    measurement was luckier (0.31 against 0.45 ms). It is the recipe, not 1.47x faster."""
    fake = _with_duplicate_pick(make_study)
    record = load_study_record(fake.folder)
    line = recipe_line(record, pareto_front(record))
    assert line.startswith("No faster than the best one-technique recipe (int8, trial #1)"), line
    assert "1.45" not in line and "faster on" not in line


def _confirmed(float32: int, peer: int, vs_float32: dict, vs_peer: dict) -> dict:
    return {
        "at": "2026-12-01T00:00:00+00:00",
        "rounds": 30,
        "float32": float32,
        "peer": peer,
        "trials": [float32, peer, *vs_float32],
        "devices": {
            "local": {
                "measured_on": "local@local",
                "vs_float32": {str(n): s for n, s in vs_float32.items()},
                "vs_peer": {str(n): s for n, s in vs_peer.items()},
            }
        },
    }


def _speedup(median: float, low: float, high: float) -> dict:
    return {"median": median, "low": low, "high": high, "rounds": 30}


def test_paired_claims_are_shown_with_their_interval(make_study: Any) -> None:
    fake = make_study()
    base = fake.add(97.0, 2.0, baseline="float32", sha="a")
    peer = fake.add(96.8, 1.0, baseline="int8", sha="b")
    pick = fake.add(96.9, 0.5, sha="c")
    confirmed = _confirmed(
        base,
        peer,
        {pick: _speedup(3.95, 3.90, 4.01), peer: _speedup(2.0, 1.97, 2.02)},
        {pick: _speedup(1.98, 1.94, 2.03)},
    )
    set_study_info(fake.study, **{attrs.CONFIRMED: confirmed})
    record = load_study_record(fake.folder)
    front = pareto_front(record)
    assert "3.95× [3.90–4.01] faster on local" in headline(record, front)
    assert "1.98× [1.94–2.03] faster on local (paired rounds)" in recipe_line(record, front)
    row = front_rows(record, front).rows[0]
    assert row[0] == str(pick) and row[4] == "3.95× [3.90–4.01]"


def test_an_interval_that_contains_one_is_no_faster(make_study: Any) -> None:
    fake = make_study()
    base = fake.add(97.0, 2.0, baseline="float32", sha="a")
    peer = fake.add(96.8, 0.52, baseline="int8", sha="b")
    pick = fake.add(96.9, 0.50, sha="c")  # stored medians say 1.04x; the pairing says no
    confirmed = _confirmed(
        base, peer, {pick: _speedup(4.0, 3.9, 4.1)}, {pick: _speedup(1.01, 0.98, 1.04)}
    )
    set_study_info(fake.study, **{attrs.CONFIRMED: confirmed})
    record = load_study_record(fake.folder)
    line = recipe_line(record, pareto_front(record))
    assert line.startswith("No faster than the best one-technique recipe"), line
    assert "1.01× [0.98–1.04]" in line


def test_without_confirmation_a_claim_says_it_is_unconfirmed(make_study: Any) -> None:
    fake = make_study()
    fake.add(97.0, 2.0, baseline="float32", sha="a")
    fake.add(96.8, 1.0, baseline="int8", sha="b")
    fake.add(96.9, 0.5, sha="c")
    record = load_study_record(fake.folder)
    front = pareto_front(record)
    assert "4.00× faster on local (unconfirmed)" in headline(record, front)
    assert "unconfirmed" in recipe_line(record, front)


def test_the_hypervolume_reference_uses_the_float32_files_pooled_latency(make_study: Any) -> None:
    """A later plan at its identity setting makes the float32 file again: the reference point's
    latency is the file's pooled median, like every other candidate's, not its first
    measurement."""
    fake = make_study()
    fake.add(97.0, 2.0, baseline="float32", sha="f32")
    fake.add(96.9, 0.5, baseline="int8", sha="int8-file")
    fake.add(97.0, 3.0, sha="f32")
    record = load_study_record(fake.folder)
    assert record.trial(2).same_as == 0
    assert reference_point(record)[1] == 2.5

import numpy as np
import pytest

from devicefit.results.pareto import (
    best_candidate,
    compare,
    dominates,
    float32_baseline,
    non_dominated,
    pareto_front,
)
from devicefit.results.records import load_study_record


def brute_force_front(points: np.ndarray, maximize: list[bool]) -> set[int]:
    """Independent check: flip maximised columns, then p is kept unless some q is <= everywhere
    and < somewhere."""
    sign = np.where(maximize, -1.0, 1.0)
    p = points * sign
    keep = set()
    for i in range(len(p)):
        le = np.all(p <= p[i], axis=1)
        lt = np.any(p < p[i], axis=1)
        if not np.any(le & lt):
            keep.add(i)
    return keep


def test_dominates_respects_directions():
    up_down = [True, False]
    assert dominates([90, 1.0], [80, 2.0], up_down)
    assert dominates([90, 1.0], [90, 2.0], up_down)
    assert not dominates([90, 1.0], [90, 1.0], up_down)  # equal points do not dominate
    assert not dominates([95, 2.0], [90, 1.0], up_down)  # a trade-off
    assert dominates([80, 2.0], [90, 1.0], [False, True])


@pytest.mark.parametrize("seed", range(20))
def test_non_dominated_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 40)), int(rng.integers(2, 4))
    # Rounded values make ties and duplicate points common, the cases a filter gets wrong.
    points = np.round(rng.random((n, k)) * 5)
    maximize = list(rng.random(k) < 0.5)
    assert set(non_dominated(points.tolist(), maximize)) == brute_force_front(points, maximize)


@pytest.mark.parametrize("seed", [0, 1])
def test_front_is_the_non_dominated_feasible_set(make_study, seed):
    rng = np.random.default_rng(seed)
    fake = make_study(devices=["pi", "laptop"])
    drops = {}
    for _ in range(30):
        acc = float(np.round(90 + 8 * rng.random(), 1))
        lat = {"pi": float(np.round(1 + 9 * rng.random())), "laptop": float(rng.integers(1, 5))}
        drops[fake.add(acc, lat, drop=float(rng.random() * 2))] = acc
        if rng.random() < 0.2:
            fake.fail()
    rec = load_study_record(fake.folder)
    front = {t.number for t in pareto_front(rec)}

    ok = [t for t in rec.trials if t.complete and t.feasible]
    pts = np.array([[t.values[o.name] for o in rec.objectives] for t in ok])
    expected = {ok[i].number for i in brute_force_front(pts, [True, False, False])}
    assert front == expected
    assert front == {t.number for t in fake.study.best_trials}  # Optuna agrees
    assert all(rec.trial(n).feasible for n in front)


def test_infeasible_trial_never_on_front_even_if_it_dominates(make_study):
    fake = make_study()
    ok = fake.add(96.5, 3.0)
    cheat = fake.add(99.0, 1.0, drop=5.0)  # better on both objectives but over the budget
    front = [t.number for t in pareto_front(load_study_record(fake.folder))]
    assert front == [ok] and cheat not in front


def test_speedup_metric_change_and_ratios_vs_float32(make_study):
    fake = make_study(devices=["pi", "laptop"])
    base = fake.add(
        97.2, {"pi": 8.0, "laptop": 2.0}, baseline="float32", size=400_000, macs=10_000_000
    )
    fast = fake.add(96.9, {"pi": 2.0, "laptop": 1.0}, size=100_000, macs=2_500_000)
    rec = load_study_record(fake.folder)

    assert float32_baseline(rec).number == base
    cmp = compare(rec, rec.trial(fast))
    assert cmp.speedup == {"pi": pytest.approx(4.0), "laptop": pytest.approx(2.0)}
    assert cmp.metric_change == pytest.approx(-0.3)
    assert cmp.reference == f"float32 trial #{base}"
    assert cmp.size_ratio == pytest.approx(0.25) and cmp.macs_ratio == pytest.approx(0.25)
    assert compare(rec, rec.trial(base)).speedup == {"pi": 1.0, "laptop": 1.0}
    assert best_candidate(rec, pareto_front(rec)).number == fast


def test_without_float32_trial_change_uses_reference_metric(make_study):
    fake = make_study(reference=97.0)
    t = fake.add(96.4, 2.0)
    rec = load_study_record(fake.folder)
    cmp = compare(rec, rec.trial(t))
    assert cmp.metric_change == pytest.approx(-0.6) and cmp.reference == "reference metric"
    assert cmp.speedup == {"local": None} and cmp.size_ratio is None

import random

import pytest
from hv_reference import grid_volume

from devicefit.errors import UsageError
from devicefit.results.hypervolume import (
    common_reference,
    hypervolume,
    hypervolume_history,
    reference_point,
    study_hypervolume,
)
from devicefit.results.records import load_study_record


@pytest.mark.parametrize("dims", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", range(5))
def test_matches_grid_volume(dims, seed):
    rng = random.Random(seed * 10 + dims)
    points = [[rng.uniform(0, 10) for _ in range(dims)] for _ in range(rng.randint(1, 9))]
    points.append(list(points[0]))  # a duplicate adds nothing
    ref = [rng.uniform(6, 12) for _ in range(dims)]
    assert hypervolume(points, ref) == pytest.approx(grid_volume(points, ref), rel=1e-12)


def test_points_outside_the_reference_add_nothing():
    assert hypervolume([[5.0, 1.0], [1.0, 5.0]], [4.0, 4.0]) == 0.0
    assert hypervolume([], [1.0, 1.0]) == 0.0
    assert hypervolume([[1.0, 1.0]], [3.0, 2.0]) == pytest.approx(2.0)


def small(make_study):
    fake = make_study()  # accuracy (max), latency_local (min); reference 97, budget 1
    fake.add(97.0, 8.0, baseline="float32")
    fake.add(96.5, 2.0)
    fake.add(96.8, 4.0)
    fake.add(95.0, 0.5)  # infeasible: never counted
    fake.add(96.2, 9.0)  # slower than float32: outside the reference box
    return fake


def test_reference_is_budget_edge_and_float32_model(make_study):
    rec = load_study_record(small(make_study).folder)
    assert reference_point(rec) == [-96.0, 8.0]
    # Boxes: (96.5-96)*(8-2) + (96.8-96.5)*(8-4) = 3.0 + 1.2
    assert study_hypervolume(rec) == pytest.approx(4.2)


def test_history_grows_in_completion_order_to_the_final_volume(make_study):
    rec = load_study_record(small(make_study).folder)
    steps = hypervolume_history(rec)
    assert [s.completed for s in steps] == [1, 2, 3, 4, 5]
    assert [s.trial for s in steps] == [0, 1, 2, 3, 4]
    volumes = [s.hypervolume for s in steps]
    assert volumes == sorted(volumes) and volumes[0] == 0.0
    assert volumes[1] == pytest.approx(3.0) and volumes[-1] == pytest.approx(4.2)
    assert all(s.elapsed_s >= 0 for s in steps)


def test_without_float32_trial_the_nadir_stands_in(make_study):
    fake = make_study(reference=None)
    fake.add(96.0, 2.0, drop=0.0)
    fake.add(95.0, 1.0, drop=0.0)
    rec = load_study_record(fake.folder)
    # worst accuracy 95 (-95 minimised), range 1 -> -94.9; worst latency 2, range 1 -> 2.1
    assert reference_point(rec) == pytest.approx([-94.9, 2.1])


def test_common_reference_is_the_worst_of_each(make_study):
    a = small(make_study)
    b = make_study(name="s2")
    b.add(97.0, 10.0, baseline="float32")
    b.add(96.9, 3.0)
    ra, rb = load_study_record(a.folder), load_study_record(b.folder)
    assert common_reference([ra, rb]) == [-96.0, 10.0]
    other = make_study(devices=["pi", "laptop"], name="s3")
    other.add(97.0, 1.0, baseline="float32")
    with pytest.raises(UsageError, match="objectives .* do not match"):
        common_reference([ra, load_study_record(other.folder)])


def test_large_fronts_of_many_objectives_give_the_same_volume_by_either_algorithm():
    from devicefit.results.hypervolume import _volume

    rng = random.Random(7)
    points = []
    for _ in range(60):  # on a simplex: every point is on the front
        raw = [rng.random() for _ in range(4)]
        points.append([x / sum(raw) for x in raw])
    ref = [1.1] * 4
    assert hypervolume(points, ref) == pytest.approx(_volume(points, ref), rel=1e-12)

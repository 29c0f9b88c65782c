"""The median's 95% interval (order statistics): right ranks, and 95% coverage in practice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devicefit.deploy.intervals import median_interval, relative_half_width


def test_ranks_follow_the_binomial_bracket() -> None:
    values = np.arange(1, 101, dtype=float)  # sorted 1..100: a value is its own rank
    median, low, high = median_interval(values[::-1])  # order of input does not matter
    assert median == 50.5
    # n = 100: ranks n/2 -+ 1.96 * sqrt(n) / 2 = 50 -+ 9.8 -> 40 and 60 (1-based 41, 61)
    assert (low, high) == (41.0, 61.0)


def test_few_values_give_their_full_range() -> None:
    assert median_interval([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)
    with pytest.raises(ValueError):
        median_interval([])


def test_the_interval_covers_the_true_median_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    true_median = math.exp(0.0)  # lognormal(0, 0.5): skewed, like run times
    trials = 2000
    covered = 0
    for _ in range(trials):
        _, low, high = median_interval(rng.lognormal(0.0, 0.5, size=60))
        covered += low <= true_median <= high
    assert 0.93 <= covered / trials <= 0.985


def test_relative_half_width_shrinks_with_more_samples() -> None:
    rng = np.random.default_rng(1)
    few, many = rng.normal(10, 1, 100), rng.normal(10, 1, 10_000)
    assert relative_half_width(many) < relative_half_width(few) / 5
    assert relative_half_width(np.full(50, 2.0)) == 0.0


def test_an_interval_is_never_narrower_than_the_clocks_tick() -> None:
    """A steady run read off a clock with 1 ns ticks: both order statistics on one tick
    would claim a perfect precision; the half-width is at least half a tick."""
    times = [9608e-6] * 400 + [9609e-6] * 50 + [9610e-6] * 50  # ms, 1 ns apart
    assert median_interval(times)[1] == median_interval(times)[2]  # a zero-width interval
    assert relative_half_width(times) == pytest.approx(0.5e-6 / 9608e-6)

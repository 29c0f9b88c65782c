"""Distribution-free 95% confidence intervals for a median, from order statistics.

Run times are skewed and heavy-tailed (a preempted run takes 10x), so no normal
approximation: the interval for the median of n independent samples is the pair of order
statistics whose ranks a Binomial(n, 1/2) brackets with 95% probability. Used for a
measurement's median (runs) and for a speed-up (per-round ratios). Only numpy: it runs on
devices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def median_interval(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """(median, low, high): the median of ``values`` and its 95% interval. With fewer than
    6 values no interval reaches 95%: it is then the full range.

    Args:
        values: independent samples, e.g. run times or per-round speed-up ratios; any order.

    Returns:
        The median, then the low and high ends of its interval, in the values' unit.

    Raises:
        ValueError: ``values`` is empty.
    """
    data = np.sort(np.asarray(values, dtype=np.float64))
    n = data.size
    if n == 0:
        raise ValueError("no values")
    median = float(np.median(data))
    if n < 6:
        return median, float(data[0]), float(data[-1])
    half = Z95 * math.sqrt(n) / 2.0
    low = max(0, math.floor(n / 2.0 - half))  # 0-based ranks of the order statistics
    high = min(n - 1, math.ceil(n / 2.0 + half))
    return median, float(data[low]), float(data[high])


def relative_half_width(values: Sequence[float] | np.ndarray) -> float:
    """Half the width of the median's 95% interval, as a fraction of the median.

    Never narrower than the finest step between the values: times read off a clock are
    quantised, and a very steady run can put both order statistics on one tick (an
    interval of width 0), which says nothing about a precision finer than the tick.

    Args:
        values: independent samples, e.g. run times.

    Returns:
        The relative half-width (0.05: the median plus or minus 5%); infinity when the
        median is not positive.

    Raises:
        ValueError: ``values`` is empty.
    """
    median, low, high = median_interval(values)
    if median <= 0:
        return math.inf
    steps = np.diff(np.unique(np.asarray(values, dtype=np.float64)))
    tick = float(steps.min()) if steps.size else 0.0
    return max(high - low, tick) / 2.0 / median

"""An independent hypervolume for checking devicefit's: a different algorithm, no shared code."""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def grid_volume(points: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """Exact volume (minimisation) by another route: split space at every coordinate and add
    up the cells whose lower corner some point dominates (weakly)."""
    axes = [sorted({p[i] for p in points if p[i] < ref[i]} | {ref[i]}) for i in range(len(ref))]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        low = [axes[d][i] for d, i in enumerate(cell)]
        if any(all(p[d] <= low[d] for d in range(len(ref))) for p in points):
            size = 1.0
            for d, i in enumerate(cell):
                size *= axes[d][i + 1] - axes[d][i]
            total += size
    return total

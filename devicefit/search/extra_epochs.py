"""How long a structural change fine-tunes: more epochs the more of the model it removed.

A network cut in half needs longer to recover than one with a few channels less. A plan
that removed a share r of the model's work may fine-tune up to STRUCTURAL * r times its
planned epochs more, at most MAX_EXTRA times: the greedy's profile plans get them up front
(by the time they are predicted to save), a sampled candidate only when it needs them
(``extra_epochs``: still improving, still over the budget, and within reach).
Kept apart from fine-tuning itself, so the driver can read the rule without Keras.
"""

from __future__ import annotations

import math

STRUCTURAL = 2.0
MAX_EXTRA = 2.0


def extra_epochs(
    planned: int, macs_removed: float, drop_before: float, drop_after: float, budget: float
) -> int:
    """More epochs for a candidate that fine-tuned for ``planned`` epochs, was still
    improving at the end, and removed a share ``macs_removed`` of the model's MACs: none
    when it is already within ``budget`` (more would only polish it), or when what is
    left over the budget is more than what the planned epochs recovered (another round
    as long would not bring it in, so the time is better spent on other candidates).

    Args:
        planned: the epochs it fine-tuned for.
        macs_removed: the share of the model's MACs its plan removed (0 to 1).
        drop_before: its validation drop before fine-tuning (metric units, >0 is worse).
        drop_after: its validation drop after the planned epochs.
        budget: the study's metric-drop budget.

    Returns:
        The extra epochs (``structural_epochs``); 0 for none.
    """
    gap, recovered = drop_after - budget, drop_before - drop_after
    if gap <= 0.0 or gap > recovered:
        return 0
    return structural_epochs(planned, macs_removed)


def structural_epochs(planned: int, removed: float) -> int:
    """The epochs a change that removed a share ``removed`` of the model's work earns beyond
    its ``planned`` ones: STRUCTURAL * removed times as many, at most MAX_EXTRA times.

    Args:
        planned: the epochs the change is planned to fine-tune for.
        removed: the share of the model's work it removed (clipped to 0..1).

    Returns:
        The extra epochs, rounded up; 0 when nothing is planned or removed.
    """
    share = min(max(removed, 0.0), 1.0)
    if planned <= 0 or share <= 0.0:
        return 0
    return int(min(MAX_EXTRA * planned, math.ceil(planned * STRUCTURAL * share)))

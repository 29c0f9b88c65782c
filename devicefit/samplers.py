"""The registry of samplers a study may name: name -> how it is made from the seed.

Optuna is imported only when a sampler is made, so the study settings can list the
names without loading it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    # group=True because technique parameters exist only when the technique is on;
    # it is marked experimental, which would print a warning on every run.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, group=True, n_startup_trials=8, constant_liar=True
    )


def _nsga2(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)


def _random(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "nsga2": _nsga2,
    "random": _random,
}

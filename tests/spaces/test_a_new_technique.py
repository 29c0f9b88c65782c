"""Adding a technique is one class plus one registry line (issue 16).

``WeightRounding`` below is the whole technique: a weights technique that rounds every
kernel weight to a multiple of ``step``. Registered, it gets the conformance suite on every
zoo model (the class inherits it) and runs in a real search through the CLI, whose worker
processes learn it from the registry's environment variable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from devicefit.cli import main
from devicefit.errors import UsageError
from devicefit.spaces import (
    REGISTERED_ENV,
    TECHNIQUES,
    all_techniques,
    register_technique,
    unregister_technique,
)
from devicefit.spaces.base import Applied, Technique, WeightsTechnique, layer_value
from devicefit.spaces.params import FloatRange
from devicefit.spaces.space import SearchSpace
from devicefit.spaces.sparsity import explain_kernels, prunable_kernels


class WeightRounding(WeightsTechnique):
    """Round every kernel weight to a multiple of ``step`` (0: left alone)."""

    name = "weight_rounding"
    default_ranges = {"step": FloatRange(0.0, 0.05)}
    layer_params = {"step": FloatRange(0.0, 0.05)}
    recipe = {"step": 0.01}

    def identity_params(self) -> dict[str, Any]:
        return {"step": 0.0}

    def strong_params(self) -> dict[str, Any]:
        return {"step": 0.05}

    def training_callbacks(
        self, model: keras.Model, params: dict[str, Any], total_steps: int
    ) -> list[keras.callbacks.Callback]:
        return []  # rounded once, after fine-tuning

    def finalize(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        notes = []
        for label, variable in prunable_kernels(model):
            step = float(layer_value(params, label.split(".", 1)[0], "step", 0.0))
            if step > 0:
                variable.assign(np.round(np.asarray(variable.numpy()) / step) * step)
                notes.append(f"{label}: rounded to multiples of {step:g}")
        return Applied(model, notes or ["step 0: weights unchanged"])

    def explain(self, model: keras.Model) -> dict[str, tuple[bool, str]]:
        return explain_kernels(model, lambda size: f"{size} kernel weights rounded")


PATH = f"{WeightRounding.__module__}:WeightRounding"

# After the class: the search's worker processes import this module to find WeightRounding,
# and importing the conformance module lists every registered technique, this one too.
import test_technique_conformance as conformance  # noqa: E402 - see above


@pytest.fixture(scope="module", autouse=True)
def registered() -> Iterator[None]:
    """The one registry line, undone after the module (other modules see the built-ins)."""
    register_technique("weight_rounding", PATH)
    yield
    unregister_technique("weight_rounding")


class TestWeightRoundingConformance(conformance.TestTechniqueConformance):
    """Every test of the Technique contract, on WeightRounding."""

    @pytest.fixture
    def technique(self) -> Technique:
        return WeightRounding()


def test_registered_technique_takes_its_stage_s_place_and_recipe() -> None:
    names = [t.name for t in all_techniques()]
    assert names.index("clustering") < names.index("weight_rounding")
    assert names.index("weight_rounding") < names.index("quantization")
    assert json.loads(os.environ[REGISTERED_ENV]) == {"weight_rounding": PATH}
    space = SearchSpace([WeightRounding()])
    (recipe,) = space.recipe_params()
    assert recipe["technique"] == "weight_rounding"
    assert recipe["params"]["weight_rounding.step"] == 0.01


def test_registration_is_checked() -> None:
    with pytest.raises(UsageError, match="already"):
        register_technique("quantization", PATH)
    with pytest.raises(UsageError, match="not a GraphTechnique"):
        register_technique("rounding", PATH)  # the class is named weight_rounding
    with pytest.raises(UsageError, match="module:Class"):
        register_technique("weight_rounding_2", "no_colon_here")
    with pytest.raises(UsageError, match="cannot import 'no_such_module_here'"):
        register_technique("weight_rounding_2", "no_such_module_here:WeightRounding")
    with pytest.raises(UsageError, match="has no 'NoSuchClass'"):
        register_technique("weight_rounding_2", f"{__name__}:NoSuchClass")
    assert "rounding" not in TECHNIQUES and "weight_rounding_2" not in TECHNIQUES


@pytest.mark.slow
def test_a_four_trial_search_runs_the_new_technique(tmp_path: Path) -> None:
    """Three baselines and the technique's own recipe: the recipe trial's file was made by
    the worker with the technique registered in the test process."""
    code = main(
        [
            "search",
            "--task",
            "digits",
            "--trials",
            "4",
            "--techniques",
            "weight_rounding",
            "--results",
            str(tmp_path),
            "--study",
            "rounding",
            "--paired-rounds",
            "0",
            "--confirm-rounds",
            "0",
            "--min-runs",
            "5",
            "--min-seconds",
            "0.1",
            "--finetune-samples",  # the recipe's fine-tuning is not what is tested here
            "256",
        ]
    )
    assert code == 0
    notes = [
        note
        for path in sorted((tmp_path / "rounding" / "trials").glob("*/metrics.json"))
        for note in json.loads(path.read_text()).get("notes", [])
    ]
    rounded = [n for n in notes if n.startswith("weight_rounding: ")]
    assert rounded and all("rounded to multiples of 0.01" in n for n in rounded), notes

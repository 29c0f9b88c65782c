"""The Technique plugin point, and the Plan a trial carries from the sampler to the pipeline."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from devicefit.spaces.params import ParamSpec

if TYPE_CHECKING:
    import keras
    import numpy as np
    import optuna

Stage = Literal["graph", "weights", "convert"]
STAGE_ORDER: dict[str, int] = {"graph": 0, "weights": 1, "convert": 2}


@dataclass(frozen=True)
class Step:
    technique: str
    params: dict[str, Any]

    def short(self) -> str:
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        return f"{self.technique}({inner})" if inner else self.technique


@dataclass(frozen=True)
class Plan:
    """An ordered list of technique steps plus fine-tuning; JSON-serializable and hashable."""

    steps: tuple[Step, ...]
    finetune_epochs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [{"technique": s.technique, "params": s.params} for s in self.steps],
            "finetune_epochs": self.finetune_epochs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        steps = tuple(Step(s["technique"], dict(s["params"])) for s in data["steps"])
        return cls(steps, int(data.get("finetune_epochs", 0)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def step(self, technique: str) -> Step | None:
        return next((s for s in self.steps if s.technique == technique), None)

    def short(self) -> str:
        parts = [s.short() for s in self.steps]
        if self.finetune_epochs:
            parts.append(f"ft{self.finetune_epochs}")
        return " + ".join(parts)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@dataclass
class Applied:
    """A rewritten model and, per layer, what the technique did or why it left the layer alone."""

    model: keras.Model
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConvertContext:
    """What conversion needs besides the model: the shipped input shape and calibration data."""

    input_shape: tuple[int, ...]  # with batch 1, e.g. (1, 32, 32, 1)
    calibration: np.ndarray  # training inputs, float32, for full-integer calibration


class Technique(ABC):
    """One compression technique and its slice of the search space.

    Contract (checked for every technique by tests/spaces/test_conformance.py):
    - ``stage`` decides when it acts: ``graph`` rewrites the Keras model before
      fine-tuning, ``weights`` acts during fine-tuning (callbacks) and after it
      (``finalize``), ``convert`` turns the model into TFLite bytes.
    - The model's input and output signature never change.
    - At ``identity_params()`` the result is numerically the original model.
    - A setting it cannot honour on some layer is skipped for that layer and
      recorded in ``Applied.notes``; it never produces an invalid model.
    - ``sample`` draws the parameters from an Optuna trial, naming each
      parameter ``"<technique>.<param>"``, within ``ranges`` (the defaults
      merged with the study file's overrides).
    """

    name: ClassVar[str]
    stage: ClassVar[Stage]
    structural: ClassVar[bool] = False  # whether it changes the computation (and so MACs)
    default_ranges: ClassVar[dict[str, ParamSpec]] = {}

    def sample(self, trial: optuna.Trial, ranges: dict[str, ParamSpec]) -> dict[str, Any]:
        return {key: spec.suggest(trial, f"{self.name}.{key}") for key, spec in ranges.items()}

    @abstractmethod
    def identity_params(self) -> dict[str, Any]:
        """Parameters at which the technique changes nothing."""

    @abstractmethod
    def strong_params(self) -> dict[str, Any]:
        """A strong but valid setting, used by the conformance tests."""

    def prepare(self, samples: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Called before ``rewrite`` with training inputs, for techniques that rank
        weights by the activations they produce. Never the test split."""

    def rewrite(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        """graph stage: return a new model; the original is left untouched."""
        raise NotImplementedError(f"{self.name} is not a graph technique")

    def training_callbacks(
        self, model: keras.Model, params: dict[str, Any], total_steps: int
    ) -> list[keras.callbacks.Callback]:
        """weights stage: callbacks that act on ``model`` while it is fine-tuned."""
        return []

    def finalize(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        """weights stage: make the technique's effect final (e.g. apply the last masks)."""
        return Applied(model)

    def convert(self, model: keras.Model, params: dict[str, Any], ctx: ConvertContext) -> bytes:
        """convert stage: the TFLite flatbuffer that would ship."""
        raise NotImplementedError(f"{self.name} is not a convert technique")

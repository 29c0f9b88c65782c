"""The Technique contract, checked for every registered technique on every zoo model.

As in optuna/testing: one test class, a fixture parametrized over every
implementation, so a new technique gets the whole suite by being registered.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pytest

from devicefit.evaluators.tflite_predict import predict
from devicefit.spaces import all_techniques
from devicefit.spaces.base import ConvertContext, Technique
from devicefit.spaces.convert import to_tflite
from devicefit.spaces.graph import copy_model
from devicefit.spaces.macs import keras_macs
from devicefit.spaces.params import Choice, FloatRange, IntRange, ParamSpec, apply_overrides

# Structural techniques with nothing to act on in a zoo model: the model must
# stay as it is and the notes must say why.
NOTHING_TO_DO = {("kernel_reduction", "mlp"): "no Conv2D"}


@pytest.fixture(params=all_techniques(), ids=lambda t: t.name)
def technique(request: pytest.FixtureRequest) -> Technique:
    return request.param


def keras_model_after(technique: Technique, zoo: Any, params: dict[str, Any]) -> Any:
    """The Keras model the pipeline would convert, and the technique's notes."""
    if technique.stage == "graph":
        applied = technique.rewrite(zoo.model, params)
        return applied.model, applied.notes
    model = copy_model(zoo.model)  # weights techniques work in place: keep the zoo intact
    if technique.stage == "weights":
        assert technique.training_callbacks(model, params, total_steps=0) == []
        applied = technique.finalize(model, params)
        return applied.model, applied.notes
    return model, []


def tflite_of(technique: Technique, zoo: Any, model: Any, params: dict[str, Any]) -> bytes:
    if technique.stage == "convert":
        ctx = ConvertContext(zoo.input_shape, zoo.inputs(count=16, seed=7))
        return technique.convert(model, params, ctx)
    return to_tflite(model, zoo.input_shape)


def reference(zoo: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(zoo.model(x, training=False))


class TestTechniqueConformance:
    def test_identity_output_matches_original(self, technique: Technique, zoo_model: Any) -> None:
        params = technique.identity_params()
        model, _ = keras_model_after(technique, zoo_model, params)
        x = zoo_model.inputs()
        out = predict(tflite_of(technique, zoo_model, model, params), x)
        assert out.shape == reference(zoo_model, x).shape
        assert np.max(np.abs(out - reference(zoo_model, x))) <= 1e-4

    def test_strong_setting_converts_and_keeps_signature(
        self, technique: Technique, zoo_model: Any
    ) -> None:
        before = [w.copy() for w in zoo_model.model.get_weights()]
        params = technique.strong_params()
        model, _ = keras_model_after(technique, zoo_model, params)
        for kind in ("inputs", "outputs"):
            old = [tuple(t.shape) for t in getattr(zoo_model.model, kind)]
            assert [tuple(t.shape) for t in getattr(model, kind)] == old
        x = zoo_model.inputs()
        out = predict(tflite_of(technique, zoo_model, model, params), x)
        assert out.shape == reference(zoo_model, x).shape
        assert np.all(np.isfinite(out))
        after = zoo_model.model.get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True)), (
            "the original model was modified"
        )

    def test_strong_setting_cuts_macs_if_structural(
        self, technique: Technique, zoo_model: Any
    ) -> None:
        if technique.stage == "convert":
            pytest.skip("conversion techniques leave the Keras model alone")
        model, notes = keras_model_after(technique, zoo_model, technique.strong_params())
        before = keras_macs(zoo_model.model, zoo_model.input_shape)
        after = keras_macs(model, zoo_model.input_shape)
        reason = NOTHING_TO_DO.get((technique.name, zoo_model.name))
        if not technique.structural:
            assert after == before
        elif reason:
            assert after == before
            assert any(reason in note for note in notes), notes
        else:
            assert after < before, notes

    def test_reference_settings_lie_in_default_ranges(self, technique: Technique) -> None:
        for params in (technique.identity_params(), technique.strong_params()):
            assert set(params) == set(technique.default_ranges)
            for key, value in params.items():
                assert _within(technique.default_ranges[key], value), (key, value)

    def test_sample_names_parameters_after_technique(self, technique: Technique) -> None:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        trial = study.ask()
        params = technique.sample(trial, technique.default_ranges)
        assert set(params) == set(technique.default_ranges)
        assert trial.params == {f"{technique.name}.{k}": v for k, v in params.items()}

    def test_sample_respects_overridden_ranges(self, technique: Technique) -> None:
        overrides = {key: _narrowed(spec) for key, spec in technique.default_ranges.items()}
        ranges = apply_overrides(technique.default_ranges, overrides, technique.name)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        for _ in range(20):
            params = technique.sample(study.ask(), ranges)
            assert all(_within(ranges[k], v) for k, v in params.items()), params


def _within(spec: ParamSpec, value: Any) -> bool:
    if isinstance(spec, Choice):
        return value in spec.options
    return spec.low <= value <= spec.high


def _narrowed(spec: ParamSpec) -> Any:
    if isinstance(spec, FloatRange):
        return [spec.low, spec.low + (spec.high - spec.low) / 4]
    if isinstance(spec, IntRange):
        return [spec.low, min(spec.high, spec.low + 1)]
    return list(spec.options[:2])

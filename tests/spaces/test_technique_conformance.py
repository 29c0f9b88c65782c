"""The Technique contract, checked for every registered technique on every zoo model.

As in optuna/testing: one test class, a fixture parametrized over every
implementation, so a new technique gets the whole suite by being registered.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np
import optuna
import pytest

from devicefit.evaluators.tflite_predict import predict
from devicefit.search.trial import convert_candidate
from devicefit.spaces import all_techniques
from devicefit.spaces.base import PER_LAYER, Technique
from devicefit.spaces.blocks import find_blocks
from devicefit.spaces.graph import graph_view
from devicefit.spaces.macs import keras_macs
from devicefit.spaces.params import Choice, FloatRange, IntRange, ParamSpec, apply_overrides
from devicefit.spaces.rebuild import copy_model
from devicefit.tasks.named_inputs import feed

# Structural techniques with nothing to act on in a zoo model: the model must
# stay as it is and the notes must say why.
NOTHING_TO_DO = {
    ("kernel_reduction", "mlp"): "no Conv2D",
    **{
        ("depth_pruning", name): "no residual Add"
        for name in (
            "sequential_cnn",
            "mlp",
            "srcnn",
            "unet",
            "digits_task",
            "sr_task",
            "reshape_head",
        )
    },
}


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


# Files already made in this process, by model fingerprint: every technique at its identity
# setting gives the same model, and the big zoo models take 10-25 s per conversion. Bounded
# in bytes (ResNet-50's file alone is 94 MB; one cache per test worker).
_CONVERTED: OrderedDict[str, bytes] = OrderedDict()
CONVERTED_BYTES = 200 * 2**20


def tflite_of(technique: Technique, zoo: Any, model: Any, params: dict[str, Any]) -> bytes:
    """The file the trial pipeline makes of this model (``convert_candidate``). Four
    calibration samples: enough for int8 ranges here, a quarter of ResNet-50's time."""
    steps = [(technique, params)]
    calibration = zoo.inputs(count=4, seed=7)
    if technique.stage == "convert":  # the file depends on the params: not cached
        return convert_candidate(model, steps, zoo.input_shape, calibration)
    sparse = technique.stage == "weights" and technique.wants_sparse_file(params)
    key = f"{fingerprint(model)}-{sparse}"
    if key not in _CONVERTED:
        _CONVERTED[key] = convert_candidate(model, steps, zoo.input_shape, calibration)
        while len(_CONVERTED) > 1 and sum(map(len, _CONVERTED.values())) > CONVERTED_BYTES:
            _CONVERTED.popitem(last=False)
    _CONVERTED.move_to_end(key)
    return _CONVERTED[key]


def fingerprint(model: Any) -> str:
    digest = hashlib.sha256(model.to_json().encode())
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def converts_and_runs(technique: Technique, zoo: Any, model: Any, params: dict[str, Any]) -> None:
    """Same input/output signature as the original; the TFLite file runs to finite outputs."""
    keeps_signature(zoo, model)
    x = zoo.inputs()
    out = predict(tflite_of(technique, zoo, model, params), x)
    assert out.shape == reference(zoo, x).shape
    assert np.all(np.isfinite(out))


def computes_the_original(technique: Technique, zoo: Any, model: Any, params: dict) -> None:
    """The TFLite file gives the original model's outputs within 1e-4."""
    x = zoo.inputs()
    out = predict(tflite_of(technique, zoo, model, params), x)
    assert out.shape == reference(zoo, x).shape
    assert np.max(np.abs(out - reference(zoo, x))) <= 1e-4


def keeps_signature(zoo: Any, model: Any) -> None:
    for kind in ("inputs", "outputs"):
        old = [tuple(t.shape) for t in getattr(zoo.model, kind)]
        assert [tuple(t.shape) for t in getattr(model, kind)] == old


def reference(zoo: Any, x: Any) -> np.ndarray:
    return np.asarray(zoo.model(feed(x), training=False))


def cuts_macs_if_structural(technique: Technique, zoo: Any, model: Any, notes: list[str]) -> None:
    before = keras_macs(zoo.model, zoo.input_shape)
    after = keras_macs(model, zoo.input_shape)
    reason = NOTHING_TO_DO.get((technique.name, zoo.name))
    if not technique.structural:
        assert after == before
    elif reason:
        assert after == before
        assert any(reason in note for note in notes), notes
    else:
        assert after < before, notes


class TestTechniqueConformance:
    def test_identity_output_matches_original(self, technique: Technique, zoo_model: Any) -> None:
        params = technique.identity_params()
        model, _ = keras_model_after(technique, zoo_model, params)
        computes_the_original(technique, zoo_model, model, params)

    def test_strong_setting_converts_runs_and_cuts_macs(
        self, technique: Technique, zoo_model: Any
    ) -> None:
        before = [w.copy() for w in zoo_model.model.get_weights()]
        params = technique.strong_params()
        model, notes = keras_model_after(technique, zoo_model, params)
        converts_and_runs(technique, zoo_model, model, params)
        after = zoo_model.model.get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True)), (
            "the original model was modified"
        )
        if technique.stage != "convert":  # conversion techniques leave the Keras model alone
            cuts_macs_if_structural(technique, zoo_model, model, notes)

    @pytest.mark.parametrize("granularity", ["per-block", "per-layer"])
    def test_per_unit_settings(
        self, technique: Technique, zoo_model: Any, granularity: str
    ) -> None:
        """Every unit at identity: the TFLite file computes what the original does. Units
        alternating strong and identity: the file keeps the signature, converts and runs, and
        structural techniques cut MACs."""
        params = per_unit_params(technique, zoo_model, granularity, lambda i: "identity")
        model, _ = keras_model_after(technique, zoo_model, params)
        computes_the_original(technique, zoo_model, model, params)

        params = per_unit_params(
            technique, zoo_model, granularity, lambda i: "strong" if i % 2 == 0 else "identity"
        )
        model, notes = keras_model_after(technique, zoo_model, params)
        converts_and_runs(technique, zoo_model, model, params)
        if technique.stage != "convert":
            before = keras_macs(zoo_model.model, zoo_model.input_shape)
            after = keras_macs(model, zoo_model.input_shape)
            has_units = bool(params.get(PER_LAYER))
            if (
                technique.structural
                and has_units
                and (technique.name, zoo_model.name) not in (NOTHING_TO_DO)
            ):
                assert after < before, notes
            else:
                assert after <= before

    def test_applied_before_training_means_fine_tuning_starts_from_finalize(
        self, technique: Technique
    ) -> None:
        """A technique that says its final state is in place before the first training
        step (so a trial scores a copy finalized at once as what fine-tuning starts from)
        leaves the model, once its callbacks are made, exactly as ``finalize`` would."""
        if not technique.applied_before_training:
            return
        assert technique.stage == "weights"
        import keras

        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
        original = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(x)))
        params = technique.strong_params()
        started = copy_model(original)
        technique.training_callbacks(started, params, total_steps=10)
        finalized = technique.finalize(copy_model(original), params).model
        pairs = zip(started.get_weights(), finalized.get_weights(), strict=True)
        assert all(np.array_equal(a, b) for a, b in pairs)
        changed = zip(started.get_weights(), original.get_weights(), strict=True)
        assert not all(np.array_equal(a, b) for a, b in changed)  # strong: it did act

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


def per_unit_params(
    technique: Technique, zoo: Any, granularity: str, setting_of: Any
) -> dict[str, Any]:
    """Global parameters at identity, and every unit's own parameters at the
    identity or strong setting, as ``setting_of(unit index)`` says."""
    blocks = find_blocks(graph_view(zoo.model))
    units = technique.units(zoo.model, granularity, blocks)
    if technique.layer_params and (technique.name, zoo.name) not in NOTHING_TO_DO:
        assert units, f"{technique.name} found nothing to set {granularity} in {zoo.name}"
    settings = {"identity": technique.identity_params(), "strong": technique.strong_params()}
    settings["identity"].setdefault("precision", "float")
    settings["strong"].setdefault("precision", "a8w8")
    params = {
        k: v for k, v in technique.identity_params().items() if k not in technique.global_only
    }
    per_layer: dict[str, dict[str, Any]] = {}
    for i, layers in enumerate(units.values()):
        chosen = settings[setting_of(i)]
        for layer in layers:
            per_layer[layer] = {key: chosen[key] for key in technique.layer_params}
    if per_layer:
        params[PER_LAYER] = per_layer
    return params


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

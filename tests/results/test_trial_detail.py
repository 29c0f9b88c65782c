"""The detail view's per-layer MACs and the parameter importances."""

from __future__ import annotations

import random

import pytest

from devicefit.quiet import silence_tensorflow
from devicefit.results.importance import MIN_TRIALS, param_importances
from devicefit.results.records import load_study_record
from devicefit.results.trial_detail import detail_html, export_command, layer_macs_table
from devicefit.spaces.kernels import KernelReduction
from devicefit.spaces.lowrank import LowRank
from devicefit.spaces.macs import keras_macs, macs_by_layer

silence_tensorflow()

import keras  # noqa: E402

L = keras.layers


def small_cnn() -> keras.Model:
    inputs = keras.Input((16, 16, 8))
    x = L.Conv2D(32, 3, padding="same", name="conv1")(inputs)
    x = L.Conv2D(32, 5, padding="valid", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs)


def test_layer_macs_follow_a_real_rewrite() -> None:
    model = small_cnn()
    shape = (1, 16, 16, 8)
    before = macs_by_layer(model, shape)
    assert sum(before.values()) == keras_macs(model, shape)
    assert before["conv1"] == 16 * 16 * 3 * 3 * 8 * 32 and "pool" not in before

    factored = LowRank().rewrite(model, {"rank_ratio": 0.25, "method": "tucker2"}).model
    after = macs_by_layer(factored, shape)
    rows = {r.layer: r for r in layer_macs_table(before, after)}
    assert set(rows) == set(before)  # every new layer belongs to the layer it replaced
    new = [name for name in after if name not in before]
    assert new and all(name.split("_")[0] in before for name in new)
    for name in ("conv1", "conv2", "logits"):
        parts = [v for k, v in after.items() if k == name or k.startswith(name + "_")]
        assert rows[name].after == sum(parts) < rows[name].before
    assert sum(r.after for r in rows.values()) == sum(after.values())

    shrunk = KernelReduction().rewrite(model, {"shrink": 2}).model  # conv2 5x5 -> 3x3, cropped
    rows = {r.layer: r for r in layer_macs_table(before, macs_by_layer(shrunk, shape))}
    assert rows["conv2"].after < rows["conv2"].before


def test_a_layer_the_original_did_not_have_is_listed_as_new() -> None:
    rows = layer_macs_table({"conv": 100}, {"conv": 40, "extra": 7})
    assert [(r.layer, r.before, r.after) for r in rows] == [("conv", 100, 40), ("extra", None, 7)]
    # An original layer that is gone shows 0 after.
    assert layer_macs_table({"a": 5, "b": 3}, {"a": 5})[1].after == 0


def test_export_command_quotes_the_folder(make_study) -> None:
    fake = make_study(name="s1")
    fake.add(97.0, 8.0, baseline="float32")
    rec = load_study_record(fake.folder)
    rec.folder = fake.folder.parent / "my study"
    assert export_command(rec, rec.trials[0]) == (
        f"devicefit export '{rec.folder}' --trial 0 --out export/trial-0"
    )


def test_the_anchors_process_medians_are_shown(make_study) -> None:
    fake = make_study(name="s1")
    fake.add(97.0, 2.7, baseline="float32")
    fake.add(96.5, 0.7, baseline="int8")
    rec = load_study_record(fake.folder)
    anchor, other = rec.trials
    anchor.metrics["latency"]["local"]["process_medians_ms"] = [2.61, 2.7, 3.05]
    assert "median over processes: 2.61, 2.70, 3.05 ms" in detail_html(rec, anchor, "COMPLETE", {})
    assert "median over processes" not in detail_html(rec, other, "COMPLETE", {})


def test_importances_find_the_parameter_that_decides(make_study) -> None:
    fake = make_study()
    fake.add(97.0, 8.0, baseline="float32")
    rng = random.Random(0)
    for _ in range(30):
        rank, noise = rng.random(), rng.random()
        # Latency is the rank; the noise parameter decides nothing.
        fake.add(96.5, 1.0 + 6.0 * rank, params={"rank": rank, "noise": noise})
    found = param_importances(load_study_record(fake.folder))
    latency = found.by_objective["latency_local"]
    assert set(latency) == {"rank", "noise"}
    assert latency["rank"] > 0.8 and sum(latency.values()) == pytest.approx(1.0)


def test_importances_need_enough_trials(make_study) -> None:
    fake = make_study()
    for i in range(MIN_TRIALS - 1):
        fake.add(96.5, 1.0 + i, params={"rank": i / 10})
    found = param_importances(load_study_record(fake.folder))
    assert found.by_objective == {} and f"need {MIN_TRIALS}" in found.reason

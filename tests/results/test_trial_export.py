import json

import pytest

from devicefit import __version__
from devicefit.errors import UsageError
from devicefit.results.export import export_trial
from devicefit.results.records import load_study_record


@pytest.fixture
def study(make_study):
    fake = make_study(devices=["pi"])
    fake.add(97.0, 8.0, baseline="float32", size=160_000)
    fake.add(96.5, 2.0, size=40_000)
    fake.fail("device gone")
    fake.add(96.0, 3.0, artifact=False)
    return fake


def test_export_copies_model_and_writes_card(study, tmp_path):
    rec = load_study_record(study.folder)
    out = tmp_path / "out" / "deep"
    paths = export_trial(rec, 1, out)

    assert [p.name for p in paths] == ["model.tflite", "MODEL_CARD.md", "model_card.json"]
    assert (out / "model.tflite").read_bytes() == (
        study.folder / "trials" / "1" / "model.tflite"
    ).read_bytes()
    card = json.loads((out / "model_card.json").read_text())
    assert card["trial"]["number"] == 1 and card["study"]["name"] == "s1"
    assert card["plan"]["steps"][0] == {"technique": "lowrank", "params": {"rank": 0.5}}
    assert card["plan"]["short"] == rec.trial(1).plan_short
    assert card["metric"]["value"] == 96.5
    assert card["metric"]["change_vs_float32"] == pytest.approx(-0.5)
    assert card["latency"]["pi"]["median_ms"] == 2.0 and card["latency"]["pi"]["threads"] == 1
    assert card["latency"]["pi"]["speedup_vs_float32"] == pytest.approx(4.0)
    assert card["size_ratio_vs_float32"] == pytest.approx(0.25)
    assert card["devices"]["pi"]["cpu"] == "test-cpu"
    assert card["devicefit_version"] == __version__ and card["exported"]
    assert card["trial"]["completed"] and card["trial"]["on_pareto_front"] is True

    md = (out / "MODEL_CARD.md").read_text()
    assert rec.trial(1).plan_short in md
    assert "1. `lowrank`: rank=0.5" in md and "2. `quantization`: bits=8" in md
    assert "| pi | 2.00 | 2.20 |" in md and "4.00×" in md
    assert not list(out.glob(".*.tmp"))


def test_export_errors(study, tmp_path):
    rec = load_study_record(study.folder)
    with pytest.raises(UsageError, match=r"no trial #42 in study 's1' \(trials: 0..3\)"):
        export_trial(rec, 42, tmp_path / "a")
    with pytest.raises(UsageError, match="trial #2 is FAIL: device gone; only COMPLETE"):
        export_trial(rec, 2, tmp_path / "b")
    with pytest.raises(UsageError, match=r"trials/3/model.tflite: artifact missing for trial #3"):
        export_trial(rec, 3, tmp_path / "c")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a folder"):
        export_trial(rec, 1, tmp_path / "file")
    # Nothing is half-written when an export is refused.
    assert not any((tmp_path / d).exists() for d in "abc")

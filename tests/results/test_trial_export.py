import hashlib
import json

import pytest

from devicefit import __version__
from devicefit.errors import UsageError
from devicefit.results.export import export_front, export_trial
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

    names = ["model.tflite", "model.keras", "MODEL_CARD.md", "model_card.json"]
    assert [p.name for p in paths] == names
    for name in ("model.tflite", "model.keras"):
        assert (out / name).read_bytes() == (study.folder / "trials" / "1" / name).read_bytes()
    card = json.loads((out / "model_card.json").read_text())
    keras_bytes = (out / "model.keras").read_bytes()
    assert card["keras_model"] == {
        "file": "model.keras",
        "bytes": len(keras_bytes),
        "sha256": hashlib.sha256(keras_bytes).hexdigest(),
    }
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


def test_export_of_the_whole_front(study, tmp_path):
    rec = load_study_record(study.folder)
    (study.folder / "trials" / "1" / "model.keras").unlink()  # a study made before Keras files
    out = tmp_path / "front"
    paths = export_front(rec, out)
    # Trials 0 (float32, 8 ms) and 1 (2 ms) are the front; 3 is dominated, 2 failed.
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "trial-0", "trial-1"]
    assert sorted(p.name for p in (out / "trial-0").iterdir()) == [
        "MODEL_CARD.md",
        "model.keras",
        "model.tflite",
        "model_card.json",
    ]
    assert not (out / "trial-1" / "model.keras").exists()
    card = json.loads((out / "trial-1" / "model_card.json").read_text())
    assert card["trial"]["number"] == 1 and card["keras_model"] is None
    assert "Keras model: not kept" in (out / "trial-1" / "MODEL_CARD.md").read_text()
    index = (out / "README.md").read_text()
    assert "| 1 |" in index and "| 0 (float32) |" in index
    assert paths[-1] == out / "README.md"


def test_export_of_the_front_checks_every_artifact_first(make_study, tmp_path):
    fake = make_study()
    fake.add(97.0, 8.0, baseline="float32")
    fake.add(96.5, 2.0, artifact=False)  # on the front, but its file is gone
    with pytest.raises(UsageError, match=r"trials/1/model.tflite: artifact missing"):
        export_front(load_study_record(fake.folder), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    empty = make_study(name="empty")
    empty.add(80.0, 1.0)  # over the budget: no front
    with pytest.raises(UsageError, match="no feasible completed trial"):
        export_front(load_study_record(empty.folder), tmp_path / "out2")

"""``devicefit report`` and ``export`` through the real command line, on stored studies."""

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devicefit.cli import main
from devicefit.results.hypervolume import hypervolume


def study_pair(make_study):
    a = make_study(name="a")
    a.add(97.0, 8.0, baseline="float32")
    a.add(96.5, 2.0)
    a.add(96.8, 4.0)
    b = make_study(name="b")
    b.add(97.0, 10.0, baseline="float32")
    b.add(96.9, 3.0)
    b.add(95.0, 1.0)  # infeasible
    return a, b


def test_format_json_prints_only_json_and_round_trips(make_study, capsys):
    a, _ = study_pair(make_study)
    assert main(["report", str(a.folder), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)  # nothing but the document on stdout
    stored = {t.number: t.values for t in a.study.trials}
    assert [m["number"] for m in doc["front"]] == [0, 1, 2]
    for member in doc["front"]:
        assert list(member["values"].values()) == stored[member["number"]]
    assert "wrote" in err and (a.folder / "report.html").is_file()


def test_compare_uses_one_reference_point(make_study, tmp_path, capsys):
    a, b = study_pair(make_study)
    out_file = tmp_path / "cmp.html"
    argv = ["report", "--compare", str(a.folder), str(b.folder), "--out", str(out_file)]
    assert main([*argv, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # The worst of the two references: accuracy budget edge 96, b's float32 latency 10 ms.
    assert doc["reference_point"] == {"accuracy": 96.0, "latency_local": 10.0}
    ref = [-96.0, 10.0]
    volumes = {s["study"]: s["hypervolume"] for s in doc["studies"]}
    assert volumes["a"] == pytest.approx(hypervolume([[-97, 8], [-96.5, 2], [-96.8, 4]], ref))
    assert volumes["b"] == pytest.approx(hypervolume([[-97, 10], [-96.9, 3]], ref))
    assert [len(s["front"]) for s in doc["studies"]] == [3, 2]

    html = out_file.read_text()
    assert "<section id='front'>" in html and "<section id='studies'>" in html
    for name, volume in volumes.items():
        assert f"data-study='{name}'" in html and f"data-value='{volume!r}'" in html

    assert main(argv) == 0  # the terminal table
    text = capsys.readouterr().out
    assert "Reference point: accuracy 96, latency_local 10" in text
    assert re.search(r"│ a\s.*│\s+3 │", text) and re.search(r"│ b\s.*│\s+2 │", text)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report"], "give a results folder, or --compare"),
        (["report", "--compare", "{a}"], "--compare: give at least two results folders"),
        (["report", "{a}", "--compare", "{a}", "{b}"], "give the folders after --compare"),
        (["report", "--compare", "{a}", "{b}", "--format", "csv"], "--format csv: --compare"),
        (["report", "{a}", "--out", "x.html"], "--out: only with --compare"),
        (["report", "--compare", "{a}", "{mixed}"], "objectives .* do not match"),
        (["export", "{a}", "--out", "o"], "one of the arguments --trial --pareto is required"),
        (["report", "{a}", "--serve", "--port", "70000"], "--port 70000: must be 0"),
        (["export", "{a}", "--trial", "1", "--pareto", "--out", "o"], "not allowed with"),
    ],
)
def test_bad_report_and_export_arguments(make_study, tmp_path, capsys, monkeypatch, argv, message):
    a, b = study_pair(make_study)
    mixed = make_study(devices=["pi", "laptop"], name="mixed")
    mixed.add(97.0, 8.0, baseline="float32")
    monkeypatch.chdir(tmp_path)
    folders = {"a": a.folder, "b": b.folder, "mixed": mixed.folder}
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main([arg.format(**folders) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_serve_rebuilds_the_page_as_the_study_grows(make_study, tmp_path, monkeypatch):
    a, _ = study_pair(make_study)
    proc = subprocess.Popen(
        [sys.executable, "-m", "devicefit", "report", str(a.folder), "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = None
        while url is None:
            line = proc.stdout.readline()
            assert line, "the server exited before printing its address"
            found = re.search(r"serving (http://127\.0\.0\.1:\d+/report\.html)", line)
            url = found.group(1) if found else None
        first = urllib.request.urlopen(url, timeout=30).read().decode()
        assert "href='#trial-2'" in first and "href='#trial-3'" not in first
        base = url.rsplit("/", 1)[0]
        root = urllib.request.urlopen(base + "/", timeout=30)
        assert root.url == url  # / redirects to the report
        for other in ("/study.db", "/trials/1/model.tflite", "/trials/"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(base + other, timeout=30)
        a.add(96.9, 3.0)  # the study grows while the report is served
        time.sleep(5.5)  # REBUILD_AFTER_S: a burst of reloads rebuilds once
        second = urllib.request.urlopen(url, timeout=30).read().decode()
        assert "href='#trial-3'" in second
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_export_pareto_through_the_cli(make_study, tmp_path, capsys):
    a, _ = study_pair(make_study)
    out = tmp_path / "front"
    assert main(["export", str(a.folder), "--pareto", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "trial-0", "trial-1", "trial-2"]
    assert f"wrote {out / 'README.md'}" in capsys.readouterr().out.replace("\n", "")
    assert (out / "trial-1" / "model.tflite").read_bytes() == (
        Path(a.folder) / "trials" / "1" / "model.tflite"
    ).read_bytes()


def test_compare_aligns_devices_by_name_and_warns_across_devices(make_study, tmp_path):
    from devicefit.results.comparison import compare_studies
    from devicefit.results.records import load_study_record

    one = make_study(devices=["pi", "laptop"], name="one")
    one.add(97.0, {"pi": 8.0, "laptop": 2.0}, baseline="float32")
    one.add(96.5, {"pi": 4.0, "laptop": 1.0})
    two = make_study(devices=["laptop", "pi"], name="two")  # the same devices, other order
    two.add(97.0, {"laptop": 3.0, "pi": 9.0}, baseline="float32")
    two.add(96.5, {"laptop": 1.0, "pi": 6.0})
    c = compare_studies([load_study_record(one.folder), load_study_record(two.folder)])
    assert c.perms == [[0, 1, 2], [0, 2, 1]] and c.same_devices and not c.caveat()
    # pi 9 (two's float32), laptop 3 (two's float32), in the first study's order.
    assert c.reference == [-96.0, 9.0, 3.0]
    box = (96.5 - 96.0) * (9.0 - 4.0) * (3.0 - 1.0), (96.5 - 96.0) * (9.0 - 6.0) * (3.0 - 1.0)
    # one's float32 box (1x1x1) overlaps its other trial's box by 0.5x1x1.
    assert c.volumes == pytest.approx([box[0] + 1.0 - 0.5, box[1]])

    other = make_study(devices=["phone", "board"], name="three")
    other.add(97.0, {"phone": 8.0, "board": 2.0}, baseline="float32")
    c = compare_studies([load_study_record(one.folder), load_study_record(other.folder)])
    assert c.perms == [[0, 1, 2], [0, 1, 2]] and "different devices" in c.caveat()


def test_compare_labels_studies_of_the_same_name_by_folder(make_study, tmp_path, capsys):
    from devicefit.results.comparison import compare_studies
    from devicefit.results.records import load_study_record

    a = make_study(name="exp")
    a.add(97.0, 8.0, baseline="float32")
    b_folder = tmp_path / "elsewhere" / "exp"
    b_folder.parent.mkdir()
    a.folder.rename(b_folder)
    b = make_study(name="exp")
    b.add(97.0, 6.0, baseline="float32")
    records = [load_study_record(b.folder), load_study_record(b_folder)]
    assert compare_studies(records).labels == [str(b.folder), str(b_folder)]
    with pytest.raises(Exception, match="a study is given twice"):
        compare_studies([records[0], load_study_record(b.folder)])


def test_export_leaves_nothing_stale(make_study, tmp_path):
    from devicefit.errors import UsageError
    from devicefit.results.export import export_front, export_trial
    from devicefit.results.records import load_study_record

    fake = make_study()
    fake.add(97.0, 8.0, baseline="float32")
    fake.add(96.5, 2.0)
    (fake.folder / "trials" / "1" / "model.keras").unlink()
    rec = load_study_record(fake.folder)
    out = tmp_path / "out"
    export_trial(rec, 0, out)
    export_trial(rec, 1, out)  # no Keras model: trial 0's must not stay beside it
    assert not (out / "model.keras").exists()
    with pytest.raises(UsageError, match="not empty"):
        export_front(rec, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "MODEL_CARD.md",
        "model.tflite",
        "model_card.json",
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    export_front(rec, empty)
    assert sorted(p.name for p in empty.iterdir()) == ["README.md", "trial-0", "trial-1"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_port_in_use_writes_nothing(make_study, tmp_path, capsys):
    import socket

    a, _ = study_pair(make_study)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["report", str(a.folder), "--serve", "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    assert not (a.folder / "report.html").exists()

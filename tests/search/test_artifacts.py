from pathlib import Path

from devicefit.search.artifacts import write_folder_atomic, write_json_atomic


def test_folder_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "trials" / "3"
    write_folder_atomic(target, {"a.bin": b"1", "b.json": b"{}"})
    assert sorted(p.name for p in target.iterdir()) == ["a.bin", "b.json"]
    # A stale folder from an untold trial is replaced, not merged.
    write_folder_atomic(target, {"c.bin": b"2"})
    assert [p.name for p in target.iterdir()] == ["c.bin"]
    assert [p.name for p in target.parent.iterdir()] == ["3"]  # no temp folders left


def test_json_written_atomically(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "x.json", {"b": 1})
    assert (tmp_path / "x.json").read_text().strip() == '{\n  "b": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]

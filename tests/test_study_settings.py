"""Every study setting is one StudyConfig field: reachable from the study file by its
name and from a flag of ``devicefit search``, with the same message for a bad value.

The tables below name every field; a new field without an entry fails the first test,
so a setting cannot be added without both ways in being checked.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from devicefit.cli import build_parser
from devicefit.config import StudyConfig, build_config, flag_of
from devicefit.config_flags import study_flag_values
from devicefit.errors import UsageError

# field -> (TOML value, flag and its text, the value both must give)
GOOD: dict[str, tuple[str, list[str], Any]] = {
    "task": ('"sr"', ["--task", "sr"], "sr"),
    "model": ('"m.keras"', ["--model", "m.keras"], "m.keras"),
    "data": ('"d.npz"', ["--data", "d.npz"], "d.npz"),
    "metric": ('"psnr"', ["--metric", "psnr"], "psnr"),
    "image_size": ('"48,64"', ["--image-size", "48,64"], (48, 64)),
    "output": ('"box"', ["--output", "box"], "box"),
    "trials": ("7", ["--trials", "7"], 7),
    "seed": ("3", ["--seed", "3"], 3),
    "sampler": ('"nsga2"', ["--sampler", "nsga2"], "nsga2"),
    "workers": ("2", ["--workers", "2"], 2),
    "study": ('"s1"', ["--study", "s1"], "s1"),
    "storage": ('"sqlite:///x.db"', ["--storage", "sqlite:///x.db"], "sqlite:///x.db"),
    "results": ('"out"', ["--results", "out"], "out"),
    "max_metric_drop": ("0.5", ["--max-metric-drop", "0.5"], 0.5),
    "devices": ('["pi=http://10.0.0.2:8765"]', ["--device", "pi=http://10.0.0.2:8765"], None),
    "objectives": ('["energy"]', ["--objective", "energy"], ("energy",)),
    "max_peak_memory_mb": ('"1.5GB"', ["--max-peak-memory", "1.5GB"], 1536.0),
    "max_energy_mj": ("2.5", ["--max-energy", "2.5"], 2.5),
    "max_temperature_c": ("70", ["--max-temperature", "70"], 70),
    "threads": ("2", ["--threads", "2"], 2),
    "ray": ('"auto"', ["--ray"], "auto"),
    "cpus_per_trial": ("2", ["--cpus-per-trial", "2"], 2),
    "recycle_after": ("5", ["--recycle-after", "5"], 5),
    "grace_seconds": ("30", ["--grace-seconds", "30"], 30),
    "keep_keras": ('"all"', ["--keep-keras", "all"], "all"),
    "min_runs": ("9", ["--min-runs", "9"], 9),
    "min_seconds": ("0.5", ["--min-seconds", "0.5"], 0.5),
    "max_seconds": ("4", ["--max-seconds", "4"], 4),
    "cooldown_c": ("55", ["--cooldown-c", "55"], 55),
    "cooldown_timeout_s": ("20", ["--cooldown-timeout", "20"], 20),
    "paired_rounds": ("4", ["--paired-rounds", "4"], 4),
    "confirm_rounds": ("0", ["--confirm-rounds", "0"], 0),
    "sensitivity": ("true", ["--sensitivity"], True),
    "finetune_samples": ("100", ["--finetune-samples", "100"], 100),
    "techniques": ('["lowrank", "quantization"]', ["--techniques", "lowrank,quantization"], None),
    "ranges": (
        "{lowrank = {rank_ratio = [0.2, 0.6]}}",
        ["--ranges", '{"lowrank": {"rank_ratio": [0.2, 0.6]}}'],
        {"lowrank": {"rank_ratio": [0.2, 0.6]}},
    ),
    "granularity": ('"per-block"', ["--granularity", "per-block"], "per-block"),
}
GOOD["devices"] = (*GOOD["devices"][:2], ("pi=http://10.0.0.2:8765",))
GOOD["techniques"] = (*GOOD["techniques"][:2], ("lowrank", "quantization"))

# field -> (TOML value, flag text): a value the study refuses, from either way in
# (a text that is not a number, or a number out of range).
BAD: dict[str, tuple[str, str]] = {
    "image_size": ('"big"', "big"),
    "trials": ('"many"', "many"),
    "seed": ('"x"', "x"),
    "sampler": ('"cmaes"', "cmaes"),
    "workers": ("0", "0"),
    "max_metric_drop": ("-1.0", "-1.0"),
    "devices": ('["bogus:"]', "bogus:"),
    "objectives": ('["heat"]', "heat"),
    "max_peak_memory_mb": ('"lots"', "lots"),
    "max_energy_mj": ('"hot"', "hot"),
    "max_temperature_c": ('"warm"', "warm"),
    "threads": ('"1.5"', "1.5"),
    "cpus_per_trial": ('"two"', "two"),
    "recycle_after": ('"often"', "often"),
    "grace_seconds": ('"long"', "long"),
    "keep_keras": ('"some"', "some"),
    "min_runs": ('"few"', "few"),
    "min_seconds": ('"short"', "short"),
    "max_seconds": ('"long"', "long"),
    "cooldown_c": ('"cool"', "cool"),
    "cooldown_timeout_s": ('"soon"', "soon"),
    "paired_rounds": ('"some"', "some"),
    "confirm_rounds": ('"all"', "all"),
    "finetune_samples": ('"1.5"', "1.5"),
    "ranges": ('"{not json"', "{not json"),
    "granularity": ('"fine"', "fine"),
}
# More out-of-range numbers, given as TOML numbers and as flag texts.
OUT_OF_RANGE = [
    ("trials", "0", "0"),
    ("threads", "0", "0"),
    ("max_peak_memory_mb", "-64", "-64"),
    ("cooldown_c", "200", "200"),
    ("cooldown_timeout_s", "-1", "-1"),
    ("paired_rounds", "-1", "-1"),
    ("finetune_samples", "0", "0"),
    ("max_seconds", "0.5", "0.5"),
]
# Any text is a value of these (names, paths, addresses, a switch): there is nothing to
# refuse here; what they name is checked where it is used (the same code for both).
FREE = {
    "task",
    "model",
    "data",
    "metric",
    "output",
    "study",
    "storage",
    "results",
    "ray",
    "sensitivity",
    "techniques",
}


def _from_file(tmp_path: Path, name: str, toml: str) -> StudyConfig:
    body = f"{name} = {toml}\n"
    if name not in ("task", "model"):
        body = 'task = "digits"\n' + body
    elif name == "model":
        body += 'data = "d.npz"\n'
    file = tmp_path / f"{name}.toml"
    file.write_text(body)
    return build_config(file, {})


def _from_flags(flags: list[str]) -> StudyConfig:
    base = [] if flags[0] in ("--task", "--model") else ["--task", "digits"]
    if flags[0] == "--model":
        base = ["--data", "d.npz"]
    args = build_parser().parse_args(["search", *base, *flags])
    return build_config(None, study_flag_values(args))


def test_every_setting_is_in_the_tables() -> None:
    names = {f.name for f in fields(StudyConfig)}
    assert set(GOOD) == names
    assert set(BAD) | FREE == names and not set(BAD) & FREE


@pytest.mark.parametrize("name", sorted(GOOD))
def test_a_setting_is_reachable_from_the_study_file_and_a_flag(tmp_path: Path, name: str) -> None:
    toml, flags, expected = GOOD[name]
    default = getattr(StudyConfig(), name)
    assert expected != default  # so reaching it is seen
    from_file = getattr(_from_file(tmp_path, name, toml), name)
    from_flags = getattr(_from_flags(flags), name)
    assert from_file == expected and from_flags == expected


@pytest.mark.parametrize(
    ("name", "toml", "text"),
    [(name, *BAD[name]) for name in sorted(BAD)] + OUT_OF_RANGE,
)
def test_a_bad_value_gets_the_same_message_from_file_and_flag(
    tmp_path: Path, name: str, toml: str, text: str
) -> None:
    flag = flag_of(name)
    with pytest.raises(UsageError) as by_file:
        _from_file(tmp_path, name, toml)
    with pytest.raises(UsageError) as by_flag:
        _from_flags([flag, text])
    where = f"--config {tmp_path / f'{name}.toml'}: "
    assert str(by_file.value).removeprefix(where) == str(by_flag.value).removeprefix("flags: ")


def test_an_empty_list_flag_leaves_the_study_file_s_value(tmp_path: Path) -> None:
    # A script passing an empty $TECHNIQUES means "not given", as before the flags were
    # derived from the fields: not "no technique at all".
    file = tmp_path / "study.toml"
    file.write_text('task = "digits"\ntechniques = ["lowrank"]\n')
    args = build_parser().parse_args(["search", "--config", str(file), "--techniques", ""])
    assert build_config(file, study_flag_values(args)).techniques == ("lowrank",)

from pathlib import Path

import pytest

from devicefit.config import StudyConfig, build_config
from devicefit.errors import UsageError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_flags_override_the_study_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 'task = "digits"\ntrials = 12\nseed = 3\nsampler = "random"\n')
    config = build_config(path, {"trials": 40, "seed": None})
    assert (config.task, config.trials, config.seed, config.sampler) == ("digits", 40, 3, "random")


def test_study_file_holds_ranges_and_techniques(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'task = "sr"\ntechniques = ["lowrank", "quantization"]\n'
        "[ranges.lowrank]\nrank_ratio = [0.2, 0.6]\n[ranges.finetune]\nepochs = [1, 2]\n",
    )
    config = build_config(path, {})
    assert config.techniques == ("lowrank", "quantization")
    assert config.ranges["lowrank"]["rank_ratio"] == [0.2, 0.6]


def test_model_flag_replaces_file_task(tmp_path: Path) -> None:
    path = _write(tmp_path, 'task = "digits"\n')
    config = build_config(path, {"model": "m.keras", "data": "d.npz"})
    assert config.task is None and config.model == "m.keras"


@pytest.mark.parametrize(
    ("text", "flags", "message"),
    [
        ('task = "digits"\ncolour = 3\n', {}, "unknown key(s) colour"),
        ('task = "digits"\ntrials = "many"\n', {}, "trials has the wrong type"),
        ("task = [", {}, "is not valid TOML"),
        ('task = "digits"\n', {"sampler": "cmaes"}, "--sampler: unknown sampler 'cmaes'"),
        ('task = "digits"\n', {"trials": 0}, "--trials: must be at least 1"),
        ('task = "digits"\n', {"max_metric_drop": -1.0}, "--max-metric-drop: must be >= 0"),
        ('model = "m.keras"\n', {}, "--model needs --data"),
        ("seed = 1\n", {}, "nothing to compress"),
        ('task = "digits"\nkeep_keras = "some"\n', {}, "keep_keras must be one of front, all"),
        ('task = "digits"\nkeep_keras = 1\n', {}, "keep_keras must be a string"),
        ('task = "digits"\ncpus_per_trial = 0\n', {}, "--cpus-per-trial and --recycle-after"),
        ('task = "digits"\ncpus_per_trial = "two"\n', {}, "cpus_per_trial has the wrong type"),
        ('task = "digits"\nmax_seconds = 0.5\n', {}, "max_seconds (0.5) must be at least"),
        ('task = "digits"\nmax_seconds = "long"\n', {}, "max_seconds has the wrong type"),
        ('task = "digits"\n', {"confirm_rounds": -1}, "--confirm-rounds: must be >= 0"),
        ('task = "digits"\nsensitivity = "yes"\n', {}, "sensitivity must be true or false"),
        ('task = "digits"\nfinetune_samples = 0\n', {}, "--finetune-samples: must be at least 1"),
        ('task = "digits"\nfinetune_samples = 1.5\n', {}, "finetune_samples has the wrong type"),
        ('task = "digits"\n[measure]\nheat = 3\n', {}, "measure.heat: unknown key"),
        ('task = "digits"\nmeasure = 3\n', {}, "measure must be a table"),
        ('task = "digits"\nmin_runs = 5\n[measure]\nmin_runs = 9\n', {}, "both in .measure."),
        ('task = "digits"\n[measure]\ncooldown_c = 0\n', {}, "--cooldown-c: must be in"),
        ('task = "digits"\n[measure]\ncooldown_c = "cool"\n', {}, "cooldown_c has the wrong"),
        ('task = "digits"\n', {"cooldown_timeout_s": -1.0}, "--cooldown-timeout: must be 0"),
    ],
)
def test_bad_study_files(tmp_path: Path, text: str, flags: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_config(_write(tmp_path, text), flags)


def test_devices_objectives_and_limits_from_file_and_flags(tmp_path: Path) -> None:
    text = (
        'task = "digits"\ndevices = ["pi=http://10.0.0.2:8765", "pi=http://10.0.0.3:8765"]\n'
        'objectives = ["peak_memory"]\nmax_peak_memory_mb = 64\n'
    )
    config = build_config(_write(tmp_path, text), {})
    assert config.devices == ("pi=http://10.0.0.2:8765", "pi=http://10.0.0.3:8765")
    assert config.objectives == ("peak_memory",) and config.max_peak_memory_mb == 64
    flags = build_config(_write(tmp_path, text), {"devices": ["local"]})
    assert flags.devices == ("local",)  # flags replace the file's list
    # Studies written before device pools stored one `device`; they still load.
    old = StudyConfig.from_dict({"task": "digits", "device": "local"})
    assert old.devices == ("local",)
    assert StudyConfig.from_dict(old.to_dict()) == old


def test_memory_sizes_on_the_command_line() -> None:
    from devicefit.config import megabytes as _megabytes

    assert _megabytes("64MB") == 64 and _megabytes("1.5GB") == 1536
    assert _megabytes("512KB") == 0.5 and _megabytes("100") == 100


def test_missing_study_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--config: file not found"):
        build_config(tmp_path / "nope.toml", {})


def test_cpus_per_trial_sets_the_training_threads_of_the_local_pool() -> None:
    import os

    from devicefit.search.executors import make_executor

    assert build_config(None, {"task": "digits"}).cpus_per_trial is None  # auto by default
    chosen = make_executor(2, threads=1)
    shared_out = make_executor(1)
    try:
        assert chosen.threads == 1
        assert shared_out.threads == max(1, os.cpu_count() or 1)
    finally:
        chosen.shutdown()
        shared_out.shutdown()


def test_a_stored_config_keeps_its_meaning_when_resumed() -> None:
    from devicefit.config import config_from_stored, stored_config

    # Stored before cpus_per_trial set the local pool's threads: 1 was Ray's default only.
    old = {**StudyConfig(task="digits").to_dict(), "cpus_per_trial": 1}
    assert config_from_stored(old, "study.json").cpus_per_trial is None
    on_ray = {**old, "ray": "auto"}
    assert config_from_stored(on_ray, "study.json").cpus_per_trial == 1
    # Stored now: an explicit 1 stays 1, the default stays automatic.
    for value in (1, None):
        config = StudyConfig(task="digits", cpus_per_trial=value)
        assert config_from_stored(stored_config(config), "study.json") == config


def test_sensitivity_is_off_unless_asked_for(tmp_path: Path) -> None:
    path = _write(tmp_path, 'task = "digits"\n')
    assert build_config(path, {}).sensitivity is False
    assert build_config(path, {"sensitivity": True}).sensitivity is True  # --sensitivity
    on = _write(tmp_path, 'task = "digits"\nsensitivity = true\n')
    assert build_config(on, {}).sensitivity is True


def test_the_measure_table_sets_how_every_device_measures(tmp_path: Path) -> None:
    from devicefit.search.measuring import measurement_spec

    text = 'task = "digits"\n[measure]\nmin_runs = 9\ncooldown_c = 55\ncooldown-timeout-s = 20\n'
    config = build_config(_write(tmp_path, text), {})
    spec = measurement_spec(config)
    assert (spec.min_runs, spec.cooldown_c, spec.cooldown_timeout_s) == (9, 55, 20)
    flagged = build_config(_write(tmp_path, text), {"cooldown_c": 48.0})
    assert measurement_spec(flagged).cooldown_c == 48.0  # a flag wins over the file
    assert measurement_spec(StudyConfig(task="digits")).cooldown_c is None


def test_a_study_file_of_settings_alone_takes_the_model_from_the_flags(tmp_path: Path) -> None:
    path = _write(tmp_path, "min_runs = 7\n[measure]\ncooldown_c = 50\n")
    config = build_config(path, {"model": "net.keras", "data": "d.npz"})
    assert (config.model, config.data, config.min_runs, config.cooldown_c) == (
        "net.keras",
        "d.npz",
        7,
        50,
    )
    with pytest.raises(UsageError, match="nothing to compress"):
        build_config(path, {})


def test_a_task_flag_drops_the_files_model_data_and_image_size(tmp_path: Path) -> None:
    path = _write(tmp_path, 'model = "net.keras"\ndata = "photos"\nimage_size = "32,32"\n')
    config = build_config(path, {"task": "digits"})
    assert (config.task, config.model, config.data, config.image_size) == (
        "digits",
        None,
        None,
        None,
    )
    assert build_config(path, {}).image_size == (32, 32)

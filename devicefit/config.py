"""The study configuration: a TOML study file, overridden by command-line flags."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from devicefit.errors import UsageError

SAMPLERS = ("tpe", "nsga2", "random")
# OptunaHub's AutoSampler is not a package: optunahub.load_module fetches its code from
# GitHub (optuna/optunahub-registry) when it runs, and no package on the index ships it.
AUTO_SAMPLER_UNAVAILABLE = (
    "--sampler: auto (OptunaHub's AutoSampler) is not available: OptunaHub downloads its "
    "code from GitHub at run time, and devicefit installs only from the package index; "
    "choose one of " + ", ".join(SAMPLERS)
)
KEEP_KERAS = ("front", "all", "none")
# What a device measurement can add as an objective (per device name) or a limit.
DEVICE_OBJECTIVES = ("peak_memory", "energy", "temperature")


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study needs; each field is also a study-file key and a flag."""

    task: str | None = None
    model: str | None = None
    data: str | None = None
    metric: str | None = None
    image_size: tuple[int, int] | None = None  # a --data folder's images: (height, width)
    output: str | None = None  # a model with several outputs: the one a built-in metric scores
    trials: int = 30
    seed: int = 0
    sampler: str = "tpe"
    workers: int = 1
    study: str | None = None
    storage: str | None = None
    results: str = "results"
    max_metric_drop: float | None = None
    # NAME=SPEC or SPEC; devices sharing a NAME form a pool, one latency objective per NAME.
    devices: tuple[str, ...] = ("local",)
    # Per device name, more objectives than latency: peak_memory, energy, temperature.
    objectives: tuple[str, ...] = ()
    max_peak_memory_mb: float | None = None  # constraints, on every device
    max_energy_mj: float | None = None  # per inference
    max_temperature_c: float | None = None  # after the timed runs
    threads: int = 1
    ray: str | None = None  # run trials as Ray tasks: a cluster address, or "auto"
    # CPUs (training threads) of each trial, Ray or local pool; None: Ray 1, pool cores/workers.
    # Training is bitwise reproducible at a fixed thread count only (summation order).
    cpus_per_trial: int | None = None
    recycle_after: int = 20  # trials per worker process before it is replaced
    grace_seconds: float = 120.0  # after Ctrl-C, how long running trials may finish
    # Which trials keep their Keras model (model.keras, for export): "front" drops those of
    # dominated and infeasible trials (they never return to the front), "all", or "none".
    keep_keras: str = "front"
    min_runs: int = 50
    min_seconds: float = 1.0
    # Timing a file stops when its median's 95% interval is within +-2%, or after this long.
    max_seconds: float = 10.0
    # Before each measurement, wait until the device's hottest thermal zone is at most this
    # (degrees C; None: no wait), for at most cooldown_timeout_s: a board still hot from the
    # last candidate throttles and times the next one slow.
    cooldown_c: float | None = None
    cooldown_timeout_s: float = 300.0
    # Paired rounds of each candidate with its reference file: the stored latency is the
    # reference's times the per-round ratio (search/reference_speed.py; 0: own median).
    paired_rounds: int = 24
    # Paired rounds that confirm the report's speed-ups at the end of a search (0: none).
    confirm_rounds: int = 30
    # Profile what each unit gives up to each technique when the study starts
    # (search/sensitivity_profiles.py). Off by default: on the digits task it costs about
    # 3.7 min, a third of a 30-trial search (benchmarks/README.md, "Profile cost").
    sensitivity: bool = False
    # Fine-tune each candidate on at most this many training samples, a fixed random subset
    # (None: the task's own choice: all, or sr's patch subset). Each epoch costs time
    # in proportion: a large data set needs no more than a few thousand to recover a cut.
    finetune_samples: int | None = None
    techniques: tuple[str, ...] | None = None  # None: all
    ranges: dict[str, dict[str, Any]] = field(default_factory=dict)
    # One granularity for every technique, or technique -> granularity (others global).
    granularity: str | dict[str, str] = "global"

    def granularity_of(self, technique: str) -> str:
        if isinstance(self.granularity, str):
            return self.granularity
        return self.granularity.get(technique, "global")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["techniques"] = list(self.techniques) if self.techniques is not None else None
        data["devices"] = list(self.devices)
        data["objectives"] = list(self.objectives)
        data["image_size"] = list(self.image_size) if self.image_size else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "study file") -> StudyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"device"})
        if unknown:
            raise UsageError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values = _normalized(data, where)
        config = cls(**values)
        config.validate(where)
        return config

    def replace(self, **changes: Any) -> StudyConfig:
        data = {**asdict(self), **{k: v for k, v in changes.items() if v is not None}}
        return StudyConfig(**_normalized(data, "config"))

    def validate(self, where: str = "config") -> None:
        _check_types(self, where)
        if self.task and self.model:
            raise UsageError(f"{where}: give either --task or --model, not both")
        if not self.task and not self.model:
            raise UsageError(f"{where}: nothing to compress: give --task NAME or --model FILE")
        if self.model and not self.data:
            raise UsageError(f"{where}: --model needs --data (FILE.npz, DIR or FILE.py:FUNCTION)")
        if self.trials < 1:
            raise UsageError(f"--trials: must be at least 1, got {self.trials}")
        if self.workers < 1:
            raise UsageError(f"--workers: must be at least 1, got {self.workers}")
        if self.threads < 1:
            raise UsageError(f"--threads: must be at least 1, got {self.threads}")
        if self.sampler == "auto":
            raise UsageError(AUTO_SAMPLER_UNAVAILABLE)
        if self.sampler not in SAMPLERS:
            raise UsageError(
                f"--sampler: unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}"
            )
        if self.max_metric_drop is not None and self.max_metric_drop < 0:
            raise UsageError(f"--max-metric-drop: must be >= 0, got {self.max_metric_drop}")
        if (self.cpus_per_trial is not None and self.cpus_per_trial < 1) or self.recycle_after < 1:
            raise UsageError("--cpus-per-trial and --recycle-after must be at least 1")
        if self.min_runs < 1 or self.min_seconds < 0:
            raise UsageError("--min-runs must be >= 1 and --min-seconds >= 0")
        if self.max_seconds < self.min_seconds:
            raise UsageError(
                f"{where}: max_seconds ({self.max_seconds}) must be at least min_seconds "
                f"({self.min_seconds})"
            )
        if self.cooldown_c is not None and not 0 < self.cooldown_c <= 150:
            raise UsageError(f"--cooldown-c: must be in (0, 150] degrees C, got {self.cooldown_c}")
        if not 0 <= self.cooldown_timeout_s <= 3600:
            raise UsageError(
                f"--cooldown-timeout: must be 0 to 3600 seconds, got {self.cooldown_timeout_s}"
            )
        if self.paired_rounds < 0:
            raise UsageError(f"--paired-rounds: must be >= 0, got {self.paired_rounds}")
        if self.confirm_rounds < 0:
            raise UsageError(f"--confirm-rounds: must be >= 0, got {self.confirm_rounds}")
        if self.finetune_samples is not None and self.finetune_samples < 1:
            raise UsageError(f"--finetune-samples: must be at least 1, got {self.finetune_samples}")
        if self.keep_keras not in KEEP_KERAS:
            choices = ", ".join(KEEP_KERAS)
            raise UsageError(
                f"{where}: keep_keras must be one of {choices}, got {self.keep_keras!r}"
            )
        _check_granularity(self.granularity, where)
        _check_devices(self, where)


def _normalized(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Lists from TOML or JSON as tuples; ``device`` (one spec, as studies before pools
    stored it) as ``devices``; a metric's or data loader's file path absolute."""
    values = dict(data)
    if "device" in values:
        device = values.pop("device")
        if "devices" in values:
            raise UsageError(f"{where}: give devices or device, not both")
        values["devices"] = [device] if isinstance(device, str) else device
    if values.get("image_size") is not None:
        from devicefit.tasks.image_folder import parse_image_size

        values["image_size"] = parse_image_size(values["image_size"])
    if isinstance(values.get("metric"), str):
        from devicefit.evaluators.custom_metric import absolute_metric_spec

        # A user's metric file is found again from any folder a study resumes in.
        values["metric"] = absolute_metric_spec(values["metric"])
    if isinstance(values.get("data"), str):
        from devicefit.tasks.data_loader import is_data_loader
        from devicefit.user_code import absolute_target

        if is_data_loader(values["data"]):  # likewise a data loader's file
            values["data"] = absolute_target(values["data"])
    for key in ("techniques", "devices", "objectives"):
        value = values.get(key)
        if isinstance(value, str):
            value = [value]
        if value is not None:
            if not isinstance(value, list | tuple):
                raise UsageError(f"{where}: {key} must be a list, got {value!r}")
            values[key] = tuple(value)
    return values


def _check_devices(config: StudyConfig, where: str) -> None:
    from devicefit.evaluators.devices import device_pools

    if not config.devices:
        raise UsageError(f"{where}: devices: give at least one --device")
    device_pools(config.devices)  # raises UsageError naming a bad spec
    for name in config.objectives:
        if name not in DEVICE_OBJECTIVES:
            raise UsageError(
                f"--objective: unknown objective {name!r}; choose from "
                f"{', '.join(DEVICE_OBJECTIVES)} (latency is always one)"
            )
    for key in ("max_peak_memory_mb", "max_energy_mj", "max_temperature_c"):
        value = getattr(config, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise UsageError(f"{where}: {key} must be a number, got {value!r}")
        if value is not None and value <= 0:
            raise UsageError(f"--{key.replace('_', '-')}: must be > 0, got {value}")


def _check_granularity(value: Any, where: str) -> None:
    from devicefit.spaces.base import GRANULARITIES

    choices = ", ".join(GRANULARITIES)
    if isinstance(value, str):
        if value not in GRANULARITIES:
            raise UsageError(f"--granularity: unknown granularity {value!r}; choose {choices}")
        return
    if not isinstance(value, dict):
        raise UsageError(f"{where}: granularity must be a string or a table, got {value!r}")
    from devicefit.spaces import TECHNIQUES

    for name, level in value.items():
        if name not in TECHNIQUES:
            raise UsageError(
                f"{where}: granularity.{name}: unknown technique; known: {', '.join(TECHNIQUES)}"
            )
        if level not in GRANULARITIES:
            raise UsageError(
                f"{where}: granularity.{name}: unknown granularity {level!r}; choose {choices}"
            )


def _check_types(config: StudyConfig, where: str) -> None:
    expected = {
        "trials": int,
        "seed": int,
        "workers": int,
        "threads": int,
        "min_runs": int,
        "confirm_rounds": int,
        "paired_rounds": int,
        "cpus_per_trial": (int, type(None)),
        "finetune_samples": (int, type(None)),
        "recycle_after": int,
        "min_seconds": (int, float),
        "max_seconds": (int, float),
        "grace_seconds": (int, float),
        "max_metric_drop": (int, float, type(None)),
        "cooldown_c": (int, float, type(None)),
        "cooldown_timeout_s": (int, float),
        "ranges": dict,
    }
    for name, types in expected.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, types):
            raise UsageError(f"{where}: {name} has the wrong type ({value!r})")
    if not isinstance(config.sensitivity, bool):
        raise UsageError(f"{where}: sensitivity must be true or false, got {config.sensitivity!r}")
    for name in (
        "task",
        "model",
        "data",
        "metric",
        "output",
        "study",
        "storage",
        "sampler",
        "ray",
        "keep_keras",
    ):
        value = getattr(config, name)
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{where}: {name} must be a string, got {value!r}")


# The layout of the config a study stores (study.json, the study's user attribute), so an
# older study resumes as it was made. 2: cpus_per_trial also sets the local pool's threads.
STORED_FORMAT = 2


def stored_config(config: StudyConfig) -> dict[str, Any]:
    """The config as a study stores it, marked with its layout."""
    return {**config.to_dict(), "format": STORED_FORMAT}


def config_from_stored(data: dict[str, Any], where: str) -> StudyConfig:
    """A study's stored config, brought up to this version's meaning."""
    data = dict(data)
    version = data.pop("format", 1)
    if version < 2 and data.get("ray") is None and data.get("cpus_per_trial") == 1:
        # It was Ray's setting only (1 by default) and local trials trained on the cores
        # shared out among the workers; keep that, or a resumed study trains differently.
        data["cpus_per_trial"] = None
    return StudyConfig.from_dict(data, where)


def load_study_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML study file into a flat dict of StudyConfig keys."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--config: file not found: {file}")
    try:
        data = tomllib.loads(file.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config: {file} is not valid TOML: {exc}") from None
    flat = {key.replace("-", "_"): value for key, value in data.items()}
    return _flatten_measure(flat, f"--config {file}")


# How candidates are measured; a study file may group them in a [measure] table.
MEASURE_KEYS = (
    "threads",
    "min_runs",
    "min_seconds",
    "max_seconds",
    "paired_rounds",
    "confirm_rounds",
    "cooldown_c",
    "cooldown_timeout_s",
)


def _flatten_measure(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The keys of a ``[measure]`` table as top-level keys, each given once."""
    if "measure" not in data:
        return data
    table = data.pop("measure")
    if not isinstance(table, dict):
        raise UsageError(f"{where}: measure must be a table ([measure]), got {table!r}")
    for key, value in table.items():
        key = key.replace("-", "_")
        if key not in MEASURE_KEYS:
            raise UsageError(
                f"{where}: measure.{key}: unknown key; known: {', '.join(MEASURE_KEYS)}"
            )
        if key in data:
            raise UsageError(f"{where}: {key} is given both in [measure] and at the top")
        data[key] = value
    return data


def build_config(file: str | Path | None, flags: dict[str, Any]) -> StudyConfig:
    """Study file values, then the flags that were given (flags win)."""
    data = load_study_file(file) if file else {}
    where = f"--config {file}" if file else "flags"
    given = {k: v for k, v in flags.items() if v is not None}
    if not data:
        return StudyConfig.from_dict(given, "flags")
    # Checked once, merged: a file may hold only the settings and leave the model (or the
    # task) to the flags.
    merged = {**data, **given}
    if "devices" in given:
        merged.pop("device", None)  # the file's older single-device key, overridden
    if data.get("task") and "model" in given:
        merged["task"] = None  # a --model flag replaces the file's task
    if data.get("model") and "task" in given:
        merged["model"] = None  # a --task flag replaces the file's model and its data
        merged["data"] = given.get("data")
        merged["image_size"] = given.get("image_size")
    return StudyConfig.from_dict(merged, where)

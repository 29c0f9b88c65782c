"""The study configuration: a TOML study file, overridden by command-line flags."""

from __future__ import annotations

import json
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from devicefit.errors import UsageError
from devicefit.samplers import SAMPLERS

# OptunaHub's AutoSampler is not a package: optunahub.load_module fetches its code from
# GitHub (optuna/optunahub-registry) when it runs, and no package on the index ships it.
AUTO_SAMPLER_UNAVAILABLE = (
    "--sampler: auto (OptunaHub's AutoSampler) is not available: OptunaHub downloads its "
    "code from GitHub at run time, and devicefit installs only from the package index; "
    "choose one of " + ", ".join(SAMPLERS)
)
KEEP_KERAS = ("front", "all", "none")
# What a device measurement can add as an objective per device name: kind ->
# (measurement field, unit).
DEVICE_OBJECTIVE_FIELDS = {
    "peak_memory": ("peak_memory_mb", "MB"),
    "energy": ("energy_per_inference_mj", "mJ"),
    "temperature": ("temperature_after_c", "C"),
}
DEVICE_OBJECTIVES = tuple(DEVICE_OBJECTIVE_FIELDS)


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    expects: str | None = None,
    repeat: bool = False,
    split: str | None = None,
    const: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A StudyConfig field: its default, and how its flag reads (config_flags.py).

    Args:
        default: the value when neither the study file nor a flag gives one; a list or
            dict default is copied for each config.
        help: the flag's help.
        flag: the flag, when not ``--`` and the field's name with dashes.
        metavar: the flag's value in the help.
        parse: turns a flag's text (or a string in the study file) into the value;
            raises ValueError when it cannot.
        expects: what a value looks like, added to a wrong-type message.
        repeat: the flag is given once per item (a list).
        split: the flag's text is a list separated by this.
        const: the flag may be given without a value, meaning this.
        choices: the values it may take, shown in the flag's help (checked by
            ``StudyConfig.validate``, with the study file's message).

    Returns:
        A dataclass field carrying that metadata.
    """
    meta = {
        "help": help,
        "flag": flag,
        "metavar": metavar,
        "parse": parse,
        "expects": expects,
        "repeat": repeat,
        "split": split,
        "const": const,
        "choices": choices,
    }
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def megabytes(text: str) -> int | float:
    """``64MB``, ``1.5GB``, ``512KB`` or a plain number of megabytes.

    Args:
        text: a flag's or study file's size; the unit's case and a trailing ``B`` or ``iB``
            do not matter (1 GB is 1024 MB).

    Returns:
        The size in megabytes: as ``number`` reads it without a unit, else a float.

    Raises:
        ValueError: ``text`` is none of those.
    """
    match = re.fullmatch(r"\s*([-+]?[0-9]*\.?[0-9]+)\s*([KMG]i?B?)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"expected a size like 64MB or 1.5GB, got {text!r}")
    if match.group(2) is None:  # a number of MB, read as TOML reads it (so -64 stays an int)
        return number(match.group(1))
    unit = match.group(2).upper()[0]
    return float(match.group(1)) * {"K": 1 / 1024, "M": 1.0, "G": 1024.0}[unit]


def number(text: str) -> int | float:
    """``text`` as TOML reads a number: "200" is an int, "200.0" a float.

    Args:
        text: a flag's text.

    Returns:
        The int, or the float when it is not an integer literal.

    Raises:
        ValueError: ``text`` is not a number.
    """
    try:
        return int(text)
    except ValueError:
        return float(text)


def _ranges(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study needs; each field is also a study-file key and a flag.

    A new setting is one field here, made with ``setting``: the study file reads it by
    its name, ``devicefit search`` gets its flag (config_flags.py), and a value of the
    wrong type gets the same message from both.
    """

    task: str | None = setting(None, "built-in task: digits or sr")
    model: str | None = setting(None, "a .keras, .h5 file or a SavedModel folder")
    data: str | None = setting(
        None,
        ".npz with x_train, y_train, x_val, y_val[, x_test, y_test], a folder of images in "
        "one sub-folder per class, or FILE.py:FUNCTION returning tf.data.Datasets",
    )
    metric: str | None = setting(
        None,
        "accuracy, top5, psnr, mse or fidelity, or your own function: FILE.py:FUNCTION or "
        "MODULE:FUNCTION (see README)",
    )
    # A --data folder's images: (height, width).
    image_size: tuple[int, int] | None = setting(
        None,
        "the size a --data folder's images are resized to (default: the model's input)",
        metavar="H,W",
    )
    output: str | None = setting(
        None,
        "a model with several outputs: the one a built-in --metric scores (a metric of your "
        "own gets them all)",
    )
    trials: int = setting(30, "complete trials wanted (default 30)")
    seed: int = setting(0, "sampler and training seed (default 0)")
    sampler: str = setting(
        "tpe", "tpe (default), nsga2 or random (auto: see the README)", choices=tuple(SAMPLERS)
    )
    workers: int = setting(1, "trials run in this many processes (default 1)")
    study: str | None = setting(None, "study name (default: task and time)")
    storage: str | None = setting(
        None, "Optuna storage URL (default: results/<study>/study.db; or $DEVICEFIT_STORAGE)"
    )
    results: str = setting("results", "folder for study folders (default: results)")
    max_metric_drop: float | None = setting(
        None, "constraint: largest metric loss vs float32 (default 1 point, 0.3 dB)"
    )
    # NAME=SPEC or SPEC; devices sharing a NAME form a pool, one latency objective per NAME.
    devices: tuple[str, ...] = setting(
        ("local",),
        "where latency is measured: local, http://HOST:PORT, adb:SERIAL, ray:RESOURCE; "
        "repeat it; devices sharing a NAME form a pool (default: local)",
        flag="--device",
        metavar="[NAME=]SPEC",
        repeat=True,
    )
    # Per device name, more objectives than latency: peak_memory, energy, temperature.
    objectives: tuple[str, ...] = setting(
        (),
        "also minimize peak_memory, energy or temperature on each device (repeatable)",
        flag="--objective",
        choices=DEVICE_OBJECTIVES,
        repeat=True,
    )
    # Constraints, on every device.
    max_peak_memory_mb: float | None = setting(
        None,
        "constraint: peak memory on every device, e.g. 64MB or 1.5GB",
        flag="--max-peak-memory",
        metavar="SIZE",
        parse=megabytes,
        expects="a size like 64MB or 1.5GB, or a number of MB",
    )
    max_energy_mj: float | None = setting(  # per inference
        None,
        "constraint: energy per inference in millijoules on every device",
        flag="--max-energy",
        metavar="MJ",
    )
    max_temperature_c: float | None = setting(  # after the timed runs
        None,
        "constraint: device temperature after the timed runs, in degrees Celsius",
        flag="--max-temperature",
        metavar="C",
    )
    threads: int = setting(1, "interpreter threads when measuring (default 1)")
    # Run trials as Ray tasks: a cluster address, or "auto".
    ray: str | None = setting(
        None,
        "run trials as tasks on a Ray cluster (default address: auto)",
        metavar="ADDRESS",
        const="auto",
    )
    # CPUs (training threads) of each trial, Ray or local pool; None: Ray 1, pool cores/workers.
    # Training is bitwise reproducible at a fixed thread count only (summation order).
    cpus_per_trial: int | None = setting(
        None,
        "CPUs (training threads) per trial, on Ray and in the local pool (default: 1 on Ray, "
        "cores / workers locally)",
    )
    recycle_after: int = setting(20, "trials per worker process before it is replaced (default 20)")
    grace_seconds: float = setting(
        120.0, "after Ctrl-C, how long running trials may finish (default 120)", metavar="SECONDS"
    )
    # Which trials keep their Keras model (model.keras, for export): "front" drops those of
    # dominated and infeasible trials (they never return to the front), "all", or "none".
    keep_keras: str = setting(
        "front",
        "which trials keep their Keras model for export: front (default), all or none",
        choices=KEEP_KERAS,
    )
    min_runs: int = setting(50, "timed runs of each measurement, at least (default 50)")
    min_seconds: float = setting(
        1.0, "seconds each measurement runs, at least (default 1)", metavar="SECONDS"
    )
    # Timing a file stops when its median's 95% interval is within +-2%, or after this long.
    max_seconds: float = setting(
        10.0,
        "timing stops once the median is known within 2%%, or after this long (default 10)",
        metavar="SECONDS",
    )
    # Before each measurement, wait until the device's hottest thermal zone is at most this
    # (degrees C; None: no wait), for at most cooldown_timeout_s: a board still hot from the
    # last candidate throttles and times the next one slow.
    cooldown_c: float | None = setting(
        None,
        "before each measurement, wait until the device is at most this hot (degrees C)",
        metavar="C",
    )
    cooldown_timeout_s: float = setting(
        300.0,
        "the longest a cool-down waits before measuring anyway (default 300)",
        flag="--cooldown-timeout",
        metavar="SECONDS",
    )
    # Paired rounds of each candidate with its reference file: the stored latency is the
    # reference's times the per-round ratio (search/reference_speed.py; 0: own median).
    paired_rounds: int = setting(
        24,
        "paired rounds of each candidate with its reference file, whose ratio the stored "
        "latency is taken from (default 24; 0: the candidate's own median)",
    )
    # Paired rounds that confirm the report's speed-ups at the end of a search (0: none).
    confirm_rounds: int = setting(
        30, "paired rounds that confirm the report's speed-ups at the end (default 30; 0: none)"
    )
    # Profile what each unit gives up to each technique when the study starts
    # (search/sensitivity_profiles.py). Off by default: on the digits task it costs about
    # 3.7 min, a third of a 30-trial search (benchmarks/README.md, "Profile cost").
    sensitivity: bool = setting(
        False,
        "profile what each unit gives up to each technique before the first trial "
        "(sensitivity.json, shown in the report; resumable)",
    )
    # Fine-tune each candidate on at most this many training samples, a fixed random subset
    # (None: the task's own choice: all, or sr's patch subset). Each epoch costs time
    # in proportion: a large data set needs no more than a few thousand to recover a cut.
    finetune_samples: int | None = setting(
        None,
        "fine-tune each candidate on at most N training samples, a fixed random subset "
        "(default: all; sr: its training patches, a subset of its own)",
        metavar="N",
    )
    techniques: tuple[str, ...] | None = setting(  # None: all
        None, "comma-separated technique names (default: all)", split=","
    )
    # Technique -> parameter -> [low, high] (or a list of choices); a [ranges] table.
    ranges: dict[str, dict[str, Any]] = setting(
        {},
        'technique ranges as JSON, e.g. \'{"lowrank": {"rank_ratio": [0.2, 0.6]}}\' '
        "(usually a [ranges] table in the study file)",
        metavar="JSON",
        parse=_ranges,
        expects="a table of technique -> parameter -> range",
    )
    # One granularity for every technique, or technique -> granularity (others global).
    granularity: str | dict[str, str] = setting(
        "global",
        "global, per-block or per-layer: how finely every technique's settings vary "
        "(per technique: a [granularity] table in the study file)",
    )

    def granularity_of(self, technique: str) -> str:
        """How finely ``technique``'s settings vary in this study.

        Args:
            technique: a technique name.

        Returns:
            "global", "per-block" or "per-layer": the study's one granularity, or the
            technique's entry of its table ("global" when the table leaves it out).
        """
        if isinstance(self.granularity, str):
            return self.granularity
        return self.granularity.get(technique, "global")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON/TOML-ready data.

        Returns:
            Field name -> value, tuples as lists (``image_size`` None when not set).
        """
        data = asdict(self)
        data["techniques"] = list(self.techniques) if self.techniques is not None else None
        data["devices"] = list(self.devices)
        data["objectives"] = list(self.objectives)
        data["image_size"] = list(self.image_size) if self.image_size else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "study file") -> StudyConfig:
        """A checked config from a study file's (or stored study's) keys.

        Args:
            data: field name -> value; the older single ``device`` key is accepted too.
            where: names the source in error messages.

        Returns:
            The config, normalised (lists as tuples, user files' paths absolute) and validated.

        Raises:
            UsageError: an unknown key, a value of the wrong type, or settings ``validate``
                refuses.
        """
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
        """A copy with some fields changed, normalised as ``from_dict`` does but not validated.

        Args:
            **changes: field name -> new value; None leaves the field as it is.

        Returns:
            The new config.

        Raises:
            UsageError: a changed value cannot be normalised (e.g. of the wrong type).
        """
        data = {**asdict(self), **{k: v for k, v in changes.items() if v is not None}}
        return StudyConfig(**_normalized(data, "config"))

    def validate(self, where: str = "config") -> None:
        """Check that the settings are of their types, consistent and in range.

        Args:
            where: names the source in error messages.

        Raises:
            UsageError: a value is of the wrong type or out of range, both or neither of task
                and model are given, a model lacks its data, or a sampler, granularity, device
                or objective is unknown.
        """
        _check_types(self, where)
        _check_task_or_model(self, where)
        _check_search_settings(self)
        _check_measurement_settings(self, where)
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
    for item in fields(StudyConfig):
        parse = item.metadata.get("parse")
        if parse is not None and isinstance(values.get(item.name), str):
            # A study file may give such a setting as its flag does ("64MB").
            try:
                values[item.name] = parse(values[item.name])
            except ValueError:
                raise wrong_type(item.name, values[item.name], where) from None
    for key in ("techniques", "devices", "objectives"):
        value = values.get(key)
        if isinstance(value, str):
            value = [value]
        if value is not None:
            if not isinstance(value, list | tuple):
                raise UsageError(f"{where}: {key} must be a list, got {value!r}")
            values[key] = tuple(value)
    return values


def _check_task_or_model(config: StudyConfig, where: str) -> None:
    """Refuse a config giving both or neither of task and model, or a model without data."""
    if config.task and config.model:
        raise UsageError(f"{where}: give either --task or --model, not both")
    if not config.task and not config.model:
        raise UsageError(f"{where}: nothing to compress: give --task NAME or --model FILE")
    if config.model and not config.data:
        raise UsageError(f"{where}: --model needs --data (FILE.npz, DIR or FILE.py:FUNCTION)")


def _check_search_settings(config: StudyConfig) -> None:
    """Refuse trial, worker or thread counts below one, or an unavailable sampler."""
    if config.trials < 1:
        raise UsageError(f"--trials: must be at least 1, got {config.trials}")
    if config.workers < 1:
        raise UsageError(f"--workers: must be at least 1, got {config.workers}")
    if config.threads < 1:
        raise UsageError(f"--threads: must be at least 1, got {config.threads}")
    if config.sampler == "auto":
        raise UsageError(AUTO_SAMPLER_UNAVAILABLE)
    if config.sampler not in SAMPLERS:
        raise UsageError(
            f"--sampler: unknown sampler {config.sampler!r}; choose one of {', '.join(SAMPLERS)}"
        )


def _check_measurement_settings(config: StudyConfig, where: str) -> None:
    """Refuse an out-of-range metric drop, trial resources, run counts, times or cooldown."""
    if config.max_metric_drop is not None and config.max_metric_drop < 0:
        raise UsageError(f"--max-metric-drop: must be >= 0, got {config.max_metric_drop}")
    if (
        config.cpus_per_trial is not None and config.cpus_per_trial < 1
    ) or config.recycle_after < 1:
        raise UsageError("--cpus-per-trial and --recycle-after must be at least 1")
    if config.min_runs < 1 or config.min_seconds < 0:
        raise UsageError("--min-runs must be >= 1 and --min-seconds >= 0")
    if config.max_seconds < config.min_seconds:
        raise UsageError(
            f"{where}: max_seconds ({config.max_seconds}) must be at least min_seconds "
            f"({config.min_seconds})"
        )
    if config.cooldown_c is not None and not 0 < config.cooldown_c <= 150:
        raise UsageError(f"--cooldown-c: must be in (0, 150] degrees C, got {config.cooldown_c}")
    if not 0 <= config.cooldown_timeout_s <= 3600:
        raise UsageError(
            f"--cooldown-timeout: must be 0 to 3600 seconds, got {config.cooldown_timeout_s}"
        )


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
        if value is not None and value <= 0:
            raise UsageError(f"{flag_of(key)}: must be > 0, got {value}")


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


def flag_of(name: str) -> str:
    """The flag of a StudyConfig field: its own, or ``--`` and its name with dashes.

    Args:
        name: the field.

    Returns:
        The flag, e.g. "--max-metric-drop".
    """
    return StudyConfig.__dataclass_fields__[name].metadata.get("flag") or "--" + name.replace(
        "_", "-"
    )


def field_types(name: str) -> tuple[type, ...]:
    """The Python types a StudyConfig field's value may have, from its annotation.

    Args:
        name: the field.

    Returns:
        The types for ``isinstance`` (an int is also a float; a list is also a tuple).
    """
    hint = typing.get_type_hints(StudyConfig)[name]
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    allowed: list[type] = []
    for member in members:
        base = typing.get_origin(member) or member
        widened: dict[Any, list[type]] = {float: [int, float], tuple: [tuple, list]}
        allowed += widened.get(base, [base])
    return tuple(allowed)


def wrong_type(name: str, value: Any, where: str) -> UsageError:
    """The one message for a setting of the wrong type, from a study file or a flag.

    Args:
        name: the StudyConfig field.
        value: what was given.
        where: the study file or "flags".

    Returns:
        The error to raise.
    """
    allowed = field_types(name)
    if allowed == (bool,):
        return UsageError(f"{where}: {name} must be true or false, got {value!r}")
    if str in allowed and dict not in allowed:
        return UsageError(f"{where}: {name} must be a string, got {value!r}")
    expects = StudyConfig.__dataclass_fields__[name].metadata.get("expects")
    return UsageError(
        f"{where}: {name} has the wrong type ({value!r})"
        + (f"; expected {expects}" if expects else "")
    )


def _check_types(config: StudyConfig, where: str) -> None:
    for item in fields(config):
        value = getattr(config, item.name)
        allowed = field_types(item.name)
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            raise wrong_type(item.name, value, where)


# The layout of the config a study stores (study.json, the study's user attribute), so an
# older study resumes as it was made. 2: cpus_per_trial also sets the local pool's threads.
STORED_FORMAT = 2


def stored_config(config: StudyConfig) -> dict[str, Any]:
    """The config as a study stores it, marked with its layout.

    Args:
        config: the study's config.

    Returns:
        ``config.to_dict()`` with ``format`` set to ``STORED_FORMAT``.
    """
    return {**config.to_dict(), "format": STORED_FORMAT}


def config_from_stored(data: dict[str, Any], where: str) -> StudyConfig:
    """A study's stored config, brought up to this version's meaning.

    Args:
        data: the config as ``stored_config`` wrote it (an older layout when it has no
            ``format``).
        where: names the source in error messages.

    Returns:
        The checked config.

    Raises:
        UsageError: the stored config is not valid in this version.
    """
    data = dict(data)
    version = data.pop("format", 1)
    if version < 2 and data.get("ray") is None and data.get("cpus_per_trial") == 1:
        # It was Ray's setting only (1 by default) and local trials trained on the cores
        # shared out among the workers; keep that, or a resumed study trains differently.
        data["cpus_per_trial"] = None
    return StudyConfig.from_dict(data, where)


def load_study_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML study file into a flat dict of StudyConfig keys.

    Dashes in keys become underscores and a ``[measure]`` table's keys move to the top.

    Args:
        path: the ``--config`` file.

    Returns:
        Key -> value as TOML gave it (not yet checked).

    Raises:
        UsageError: the file is missing, not TOML, or its ``[measure]`` table is wrong.
    """
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
    """Study file values, then the flags that were given (flags win).

    A ``--model`` flag replaces the file's task, and a ``--task`` flag the file's model
    and its data.

    Args:
        file: the ``--config`` study file, or None.
        flags: field name -> a flag's value, None where the flag was not given.

    Returns:
        The checked config.

    Raises:
        UsageError: the study file cannot be read, or the merged settings are not valid.
    """
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

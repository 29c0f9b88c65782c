"""``devicefit search``'s flags for study settings, made from StudyConfig's fields.

Each field's metadata (config.setting) says how its flag reads; a flag's text becomes the
field's type here, and a text that cannot gets the message a study file's value of the
wrong type gets (config.wrong_type).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import Field, fields
from typing import Any

from devicefit.config import StudyConfig, field_types, flag_of, number, wrong_type

FLAGS_WHERE = "flags"  # how messages name the command line


def add_study_flags(parser: argparse.ArgumentParser, only: Iterable[str] | None = None) -> None:
    """Add a flag per StudyConfig field to ``parser``; each flag's value is its text.

    Args:
        parser: a subcommand's parser.
        only: the fields to add (default: all).
    """
    wanted = None if only is None else set(only)
    for item in fields(StudyConfig):
        if wanted is not None and item.name not in wanted:
            continue
        meta = item.metadata
        options: dict[str, Any] = {"dest": item.name, "help": meta["help"], "default": None}
        if field_types(item.name) == (bool,):
            options["action"] = "store_true"
        else:
            choices = meta.get("choices")
            options["metavar"] = "{" + ",".join(choices) + "}" if choices else meta.get("metavar")
            if meta.get("repeat"):
                options["action"] = "append"
            elif meta.get("const") is not None:
                options.update(nargs="?", const=meta["const"])
        parser.add_argument(flag_of(item.name), **options)


def study_flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The study settings the command line gave, as their fields' types.

    Args:
        args: parsed by a parser with ``add_study_flags``.

    Returns:
        Field name -> value, None where the flag was not given.

    Raises:
        UsageError: a flag's text is not of its setting's type (the study file's message).
    """
    values: dict[str, Any] = {}
    for item in fields(StudyConfig):
        if hasattr(args, item.name):
            text = getattr(args, item.name)
            values[item.name] = None if text is None else _typed(item, text)
    return values


def _typed(item: Field[Any], text: Any) -> Any:
    """A flag's text (a list of texts for a repeated flag) as the field's value."""
    meta, allowed = item.metadata, field_types(item.name)
    if not isinstance(text, str):  # a switch's True, a repeated flag's list
        return text
    if meta.get("split"):
        parts = [part.strip() for part in text.split(meta["split"]) if part.strip()]
        return parts or None  # an empty list flag (--techniques "") is not given

    convert = meta.get("parse")
    if convert is None and str not in allowed:
        # Numbers here; other texts (an image size) are read as a study file's are.
        convert = number if float in allowed else int if int in allowed else None
    if convert is None:
        return text
    try:
        return convert(text)
    except ValueError:
        raise wrong_type(item.name, text, FLAGS_WHERE) from None

"""The technique registry: lookup, order, and that importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devicefit.errors import UsageError
from devicefit.spaces import TECHNIQUES, all_techniques, get_technique
from devicefit.spaces.base import STAGE_ORDER


def test_unknown_technique_names_itself_and_the_known_ones() -> None:
    with pytest.raises(UsageError) as info:
        get_technique("pruning")
    message = str(info.value)
    assert "'pruning'" in message
    assert all(name in message for name in TECHNIQUES)


def test_all_techniques_come_in_plan_order() -> None:
    names = [t.name for t in all_techniques()]
    assert names == [
        "depth_pruning",
        "channel_pruning",
        "kernel_reduction",
        "lowrank",
        "magnitude_pruning",
        "clustering",
        "quantization",
    ]
    stages = [STAGE_ORDER[t.stage] for t in all_techniques()]
    assert stages == sorted(stages)


def test_registry_keys_are_the_technique_names() -> None:
    for name in TECHNIQUES:
        assert get_technique(name).name == name


def test_importing_the_registry_does_not_import_tensorflow() -> None:
    code = "import sys, devicefit.spaces; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr

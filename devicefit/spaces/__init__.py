"""Compression techniques and their registry.

The registry names each technique's class by import path, so importing
``devicefit.spaces`` (or ``devicefit.spaces.params`` for config validation)
does not pull in TensorFlow; a technique's module is imported when it is asked for.

Order matters: ``all_techniques()`` is the order a Plan applies them.
- ``depth_pruning`` first: a residual branch it removes is gone before channel pruning
  ties its channels into groups or low-rank factorizes its convolutions.
- ``channel_pruning`` first: it ranks the original filters and needs the
  original Conv->Conv chains; after factorization it would prune the rank
  that ``lowrank`` chose.
- ``kernel_reduction`` before ``lowrank``: the SVD then factorizes the kernel
  that ships, instead of cropping taps out of factors chosen for a larger one.
- ``lowrank`` last of the graph stage, then weights (``magnitude_pruning``,
  during fine-tuning), then conversion (``quantization``).
"""

from __future__ import annotations

import json
import os
from importlib import import_module
from typing import TYPE_CHECKING

from devicefit.errors import UsageError

if TYPE_CHECKING:
    from devicefit.spaces.base import ConvertTechnique, Technique

TECHNIQUES: dict[str, str] = {
    "depth_pruning": "devicefit.spaces.depth:DepthPruning",
    "channel_pruning": "devicefit.spaces.pruning:ChannelPruning",
    "kernel_reduction": "devicefit.spaces.kernels:KernelReduction",
    "lowrank": "devicefit.spaces.lowrank:LowRank",
    "magnitude_pruning": "devicefit.spaces.sparsity:MagnitudePruning",
    # after magnitude pruning: clustering keeps the zeros pruning made
    "clustering": "devicefit.spaces.clustering:WeightClustering",
    "quantization": "devicefit.spaces.quantization:Quantization",
}

# Converts a plan with no convert technique, at its identity setting (a float32 file).
DEFAULT_CONVERTER = "quantization"
# Techniques registered at run time (register_technique), as JSON name -> "module:Class": the
# search's worker processes inherit the environment, so they know them too.
REGISTERED_ENV = "DEVICEFIT_TECHNIQUES"


def register_technique(name: str, path: str) -> None:
    """Make the technique class at ``path`` ("package.module:Class") known as ``name``, in
    this process and in the worker processes it starts from now on (local pools inherit
    the environment; Ray tasks are given it).

    Its stage class places it in a plan, after the registered techniques of its stage.

    Args:
        name: the technique's name (its class's ``name``).
        path: where its class is, importable by the workers too.

    Raises:
        UsageError: ``name`` is taken by another technique, ``path`` is not
            "module:Class" or names no importable module or class, or the class is not a
            stage class's subclass named ``name``.
    """
    if TECHNIQUES.get(name, path) != path:
        raise UsageError(f"register_technique: {name!r} is already {TECHNIQUES[name]}")
    cls = _load(path)
    from devicefit.spaces.base import STAGE_CLASSES

    if not (isinstance(cls, type) and issubclass(cls, STAGE_CLASSES)) or cls.name != name:
        raise UsageError(
            f"register_technique: {path} is not a GraphTechnique, WeightsTechnique or "
            f"ConvertTechnique named {name!r}"
        )
    TECHNIQUES[name] = _REGISTERED[name] = path
    os.environ[REGISTERED_ENV] = json.dumps(_REGISTERED)


def unregister_technique(name: str) -> None:
    """Forget a technique ``register_technique`` added (tests clean up with it).

    Args:
        name: the name it was registered as.
    """
    if _REGISTERED.pop(name, None) is not None:
        del TECHNIQUES[name]
    if _REGISTERED:
        os.environ[REGISTERED_ENV] = json.dumps(_REGISTERED)
    else:
        os.environ.pop(REGISTERED_ENV, None)


def _inherited() -> dict[str, str]:
    """The techniques the process that started this one registered."""
    text = os.environ.get(REGISTERED_ENV)
    if not text:
        return {}
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"${REGISTERED_ENV}: not JSON ({exc})") from None
    if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
        raise UsageError(f'${REGISTERED_ENV}: expected {{"name": "module:Class"}}, got {text!r}')
    return entries


_REGISTERED: dict[str, str] = _inherited()
TECHNIQUES.update(_REGISTERED)

# The graph techniques whose saving the device profile predicts (from the MACs a setting
# keeps), in the order a plan applies them: the greedy plans and the space's shaping use them.
PROFILED_GRAPH_TECHNIQUES = ("depth_pruning", "channel_pruning", "kernel_reduction", "lowrank")


def technique_class(name: str) -> type[Technique]:
    """The class registered as ``name``; its module is imported now if it was not yet.

    Args:
        name: a technique name, built in or added by ``register_technique``.

    Returns:
        The technique class (not an instance).

    Raises:
        UsageError: no technique is registered as ``name``, or its path is not
            "module:Class" or names no importable module or class.
    """
    if name not in TECHNIQUES:
        raise UsageError(f"unknown technique {name!r}; known: {', '.join(TECHNIQUES)}")
    return _load(TECHNIQUES[name])


def _load(path: str) -> type[Technique]:
    """The class at ``path`` ("package.module:Class"); a path that names no importable
    module or no attribute of it is the user's input, so it is a UsageError too."""
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise UsageError(f"technique {path!r} is not 'module:Class'")
    try:
        loaded = import_module(module)
    except ImportError as exc:
        raise UsageError(f"technique {path!r}: cannot import {module!r} ({exc})") from None
    cls = getattr(loaded, attr, None)
    if cls is None:
        raise UsageError(f"technique {path!r}: module {module!r} has no {attr!r}")
    return cls


def get_technique(name: str) -> Technique:
    """A new instance of the technique registered as ``name``.

    Args:
        name: a technique name, built in or added by ``register_technique``.

    Returns:
        A fresh instance, sharing no state with earlier ones (``prepare`` not yet called).

    Raises:
        UsageError: no technique is registered as ``name``.
    """
    return technique_class(name)()


def default_converter() -> ConvertTechnique:
    """The convert technique for plans that have none (they ship a float32 file).

    Returns:
        A new instance of the ``DEFAULT_CONVERTER`` technique, to run at its identity setting.
    """
    from devicefit.spaces.base import ConvertTechnique

    converter = get_technique(DEFAULT_CONVERTER)
    assert isinstance(converter, ConvertTechnique)  # the registry's own entry
    return converter


def all_techniques() -> list[Technique]:
    """One instance of every technique, in the order a Plan applies them (stage order).

    Returns:
        A new instance of each registered technique: graph stage first, then weights, then
        convert; registry order within a stage.
    """
    from devicefit.spaces.base import STAGE_ORDER

    techniques = [get_technique(name) for name in TECHNIQUES]
    return sorted(techniques, key=lambda t: STAGE_ORDER[t.stage])  # stable within a stage

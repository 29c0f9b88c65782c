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

from importlib import import_module
from typing import TYPE_CHECKING

from devicefit.errors import UsageError

if TYPE_CHECKING:
    from devicefit.spaces.base import Technique

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

# The graph techniques whose saving the device profile predicts (from the MACs a setting
# keeps), in the order a plan applies them: the greedy plans and the space's shaping use them.
PROFILED_GRAPH_TECHNIQUES = ("depth_pruning", "channel_pruning", "kernel_reduction", "lowrank")


def technique_class(name: str) -> type[Technique]:
    if name not in TECHNIQUES:
        raise UsageError(f"unknown technique {name!r}; known: {', '.join(TECHNIQUES)}")
    module, attr = TECHNIQUES[name].split(":")
    return getattr(import_module(module), attr)


def get_technique(name: str) -> Technique:
    """A new instance of the technique registered as ``name``."""
    return technique_class(name)()


def all_techniques() -> list[Technique]:
    """One instance of every technique, in the order a Plan applies them (stage order)."""
    from devicefit.spaces.base import STAGE_ORDER

    techniques = [get_technique(name) for name in TECHNIQUES]
    return sorted(techniques, key=lambda t: STAGE_ORDER[t.stage])  # stable within a stage

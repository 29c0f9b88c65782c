"""Blocks of a model, found from its graph, for ``per-block`` search granularity.

A block starts wherever the whole network passes through one tensor (a cut:
nothing else is live) and the next layer makes new channels (Conv, Dense). So
a residual block, an Inception module or a MobileNet inverted-residual block is
one block with everything inside it, and a plain conv-BN-ReLU chain gets one
block per convolution with its BatchNorm and activation. Channel-wise layers
after a cut stay with the block before them.
"""

from __future__ import annotations

from devicefit.spaces.graph import PRODUCERS, GraphView


def find_blocks(view: GraphView) -> dict[str, list[str]]:
    """Block name (``block1``, ``block2``...) -> its layers, in topological order.

    Args:
        view: the model's graph (``graph_view``).

    Returns:
        Block name -> its layers' names, in topological order; input layers are in no block.
    """
    pending = {name: len(set(view.consumers.get(name, []))) for name in view.order}
    live: set[str] = set()
    blocks: list[list[str]] = [[]]
    cut = True  # the model input is a cut
    for name in view.order:
        layer = view.layers[name]
        if not view.inputs.get(name):  # an input layer belongs to no block
            live.add(name)
            continue
        if cut and isinstance(layer, PRODUCERS) and blocks[-1]:
            blocks.append([])
        blocks[-1].append(name)
        for producer in view.all_inputs.get(name, ()):
            pending[producer] -= 1
            if pending[producer] <= 0:
                live.discard(producer)
        if pending[name] > 0:
            live.add(name)
        cut = len(live) <= 1
    return {f"block{i}": layers for i, layers in enumerate(blocks, 1) if layers}


def block_of(blocks: dict[str, list[str]]) -> dict[str, str]:
    """Layer name -> its block's name.

    Args:
        blocks: block name -> its layers, as ``find_blocks`` gives them.

    Returns:
        Each layer's name -> the name of the block holding it.
    """
    return {layer: block for block, layers in blocks.items() for layer in layers}

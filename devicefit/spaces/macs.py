"""Multiply-accumulate count of a Keras model, from its layers' shapes.

Only a proxy: devicefit ranks candidates by measured latency, but MACs tell a
structural technique's effect apart from noise and go into the report.
"""

from __future__ import annotations

from math import prod
from typing import Any, cast

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.graph import Shape, graph_view
from devicefit.spaces.rebuild import as_functional

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()

L = keras.layers


def keras_macs(model: keras.Model, input_shape: Shape | None = None) -> int:
    """MACs of one forward pass of one sample (batch excluded).

    Counts Conv2D (``out_h*out_w*kh*kw*cin*cout/groups``), DepthwiseConv2D,
    SeparableConv2D and Dense (``positions*in*units``); nested models are
    counted through. ``input_shape`` (batch included) is needed when the model
    has unknown spatial sizes, e.g. a fully-convolutional ``(None, None, 1)`` input.

    Args:
        model: the Keras model; read only.
        input_shape: the input shape, batch included; None: the model's own.

    Returns:
        The multiply-accumulates of one sample.

    Raises:
        ValueError: a counted layer's size is unknown (no ``input_shape``), or
            ``input_shape`` differs from the shape of a model with several inputs.
    """
    return sum(macs_by_layer(model, input_shape).values())


def macs_by_layer(model: keras.Model, input_shape: Shape | None = None) -> dict[str, int]:
    """MACs of each layer that has any, by layer name, in graph order (see ``keras_macs``).

    Reports put these side by side for the original model and a candidate: a rewrite keeps
    a replaced layer's name on its last part and names new parts ``<name>_<suffix>``.

    Args:
        model: the Keras model; read only.
        input_shape: the input shape, batch included; None: the model's own.

    Returns:
        Layer name -> the MACs of one sample (every call of a shared layer counted).

    Raises:
        ValueError: as ``keras_macs``.
    """
    if isinstance(model, keras.Sequential):
        model = as_functional(model)
    shapes = layer_shapes(model, input_shape)
    view = graph_view(model)
    out = {}
    for name, (in_shape, out_shape) in shapes.items():
        macs = view.calls.get(name, 1) * layer_macs(view.layers[name], in_shape, out_shape)
        if macs:
            out[name] = int(macs)
    return out


def layer_shapes(
    model: keras.Model, input_shape: Shape | None = None
) -> dict[str, tuple[Shape, Shape]]:
    """First input and output shape of every layer, at ``input_shape`` if given.

    Args:
        model: a functional Keras model; read only.
        input_shape: the input shape, batch included; None: the shapes it was built with.

    Returns:
        Layer name -> (its first input's shape, its output's shape); at a new
        ``input_shape`` the input layers are left out.

    Raises:
        ValueError: ``input_shape`` differs from the model's and it has several inputs.
    """
    view = graph_view(model)
    if input_shape is None or tuple(model.inputs[0].shape[1:]) == tuple(input_shape[1:]):
        return view.shapes
    if len(model.inputs) != 1:
        raise ValueError("input_shape is supported for single-input models only")
    shapes: dict[str, tuple[Shape, Shape]] = {}

    # Symbolic shape inference only: compute_output_spec adds no nodes to the
    # original layers, unlike calling them on new KerasTensors would.
    def record(op: Any, *args: Any, **kwargs: Any) -> Any:
        """Stand in for calling ``op``: its output's spec, its shapes noted once.

        Args:
            op: the layer or operation the graph calls.
            *args: the call's positional arguments (KerasTensors).
            **kwargs: the call's keyword arguments.

        Returns:
            ``op``'s output spec.
        """
        spec = op.compute_output_spec(*args, **kwargs)
        first_in = next((a for a in keras.tree.flatten(args) if hasattr(a, "shape")), None)
        first_out = keras.tree.flatten(spec)[0]
        shapes.setdefault(op.name, (_shape(first_in), _shape(first_out)))
        return spec

    spec = keras.KerasTensor((None, *input_shape[1:]), dtype=model.inputs[0].dtype)
    model._run_through_graph([spec], call_fn=record)
    return shapes  # input layers never pass through call_fn; they have no MACs


def _shape(tensor: Any) -> Shape:
    return tuple(tensor.shape) if tensor is not None else ()


def layer_macs(layer: Any, in_shape: Shape, out_shape: Shape) -> int:
    """The MACs of one call of ``layer`` on one sample.

    Counts Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D and Dense layers and
    nested models; any other layer is 0.

    Args:
        layer: the layer, or a nested model.
        in_shape: its input's shape, batch included.
        out_shape: its output's shape, batch included.

    Returns:
        The multiply-accumulates.

    Raises:
        ValueError: a counted layer's sizes (all but the batch) are not all known.
    """
    if isinstance(layer, keras.Model):
        return keras_macs(layer, (1, *in_shape[1:]))
    kinds = L.Conv2D | L.DepthwiseConv2D | L.SeparableConv2D | L.Conv2DTranspose | L.Dense
    if not isinstance(layer, kinds):
        return 0
    if any(d is None for d in (*in_shape[1:], *out_shape[1:])):
        raise ValueError(
            f"layer {layer.name!r} has unknown sizes {in_shape} -> {out_shape}; "
            "pass input_shape to keras_macs"
        )
    # Checked above: every size but the batch axis's (never read below) is known.
    in_shape, out_shape = cast(tuple[int, ...], in_shape), cast(tuple[int, ...], out_shape)
    if isinstance(layer, L.Dense):
        return prod(in_shape[1:-1]) * int(in_shape[-1]) * layer.units
    channels_last = layer.data_format == "channels_last"
    cin = int(in_shape[-1] if channels_last else in_shape[1])
    spatial = prod(out_shape[1:3] if channels_last else out_shape[2:4])
    taps = prod(layer.kernel_size)
    if isinstance(layer, L.Conv2DTranspose):  # every input pixel scatters a whole kernel
        positions = prod(in_shape[1:3] if channels_last else in_shape[2:4])
        return positions * taps * cin * layer.filters
    if isinstance(layer, L.DepthwiseConv2D):
        return spatial * taps * cin * layer.depth_multiplier
    if isinstance(layer, L.SeparableConv2D):
        depthwise = spatial * taps * cin * layer.depth_multiplier
        return depthwise + spatial * cin * layer.depth_multiplier * layer.filters
    return spatial * taps * (cin // layer.groups) * layer.filters

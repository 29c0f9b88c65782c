"""The channel-dependency graph of a Keras 3 model: which channels must be pruned together.

Every tensor's channel axis (the last one) is described by a :class:`Layout`: a
run of segments, each a slice of one *channel group*. A layer that makes new
channels (Conv, Dense, the pointwise half of a separable conv) starts a group;
channel-wise layers (BatchNorm, activations, pooling, padding, up-sampling,
Dropout, depthwise convolution) pass their input's layout on; ``Add`` and the
other element-wise merges unite the groups of their inputs, since channel ``k``
of every input meets channel ``k`` of the others; ``Concatenate`` lays its
inputs' segments side by side; ``Flatten`` repeats the layout once per spatial
position (position-major), so the Dense after it drops the same channel at
every position. A ``Reshape`` is followed where the mapping is exact: one that
keeps the last axis passes the layout on, one that folds everything into the
last axis is a Flatten; any other mixes channels with positions and freezes.

Removing channel ``k`` of a group then means: every producer of the group drops
filter ``k``, every channel-wise layer drops its per-channel weights at the
group's offset, every consumer drops the matching input rows. Groups that reach
a model output, come from a model input, or touch a layer the graph does not
know are *frozen*: left exactly as they are, with the reason recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any, cast

import numpy as np

from devicefit.quiet import silence_tensorflow

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()

L = keras.layers
Shape = tuple[int | None, ...]

# Layers that make new channels from all of their input channels.
PRODUCERS = (L.Conv1D, L.Conv2D, L.Conv2DTranspose, L.Dense, L.SeparableConv2D)
# Layers through which channel k stays channel k, some with one weight per channel.
CHANNELWISE = (
    L.BatchNormalization, L.LayerNormalization, L.Activation, L.ReLU, L.LeakyReLU, L.ELU,
    L.PReLU, L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.GaussianNoise,
    L.GaussianDropout, L.AlphaDropout, L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D,
    L.AveragePooling2D, L.UpSampling1D, L.UpSampling2D, L.ZeroPadding1D, L.ZeroPadding2D,
    L.Cropping1D, L.Cropping2D, L.DepthwiseConv2D, L.Identity, L.Rescaling,
)  # fmt: skip
GLOBAL_POOLING = (
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
)  # fmt: skip
MERGES = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
# Elementwise activations only: softmax-like ones mix channels, and unknown ones might.
ELEMENTWISE = {
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish",
    "hard_silu", "hard_swish", "sigmoid", "hard_sigmoid", "tanh", "hard_tanh", "softplus",
    "softsign", "mish", "exponential", "celu", "log_sigmoid",
}  # fmt: skip


@dataclass
class GraphView:
    """Who feeds whom in a functional model, by layer name (nested models are opaque)."""

    layers: dict[str, Any]
    consumers: dict[str, list[str]] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)  # first call's producers, in order
    all_inputs: dict[str, set[str]] = field(default_factory=dict)  # producers over every call
    calls: dict[str, int] = field(default_factory=dict)  # >1 means a shared layer
    outputs: set[str] = field(default_factory=set)
    order: list[str] = field(default_factory=list)  # topological, inputs first
    shapes: dict[str, tuple[Shape, Shape]] = field(default_factory=dict)  # first call's in/out
    multi_output: set[str] = field(default_factory=set)


def graph_view(model: keras.Model) -> GraphView:
    """Build the consumer graph from the model's nodes.

    Keras 3 has no public node API; ``_nodes_by_depth`` is what ``clone_model``
    itself walks, and it holds only this model's calls of each layer (a layer
    also used in another model has extra inbound nodes outside it).

    Args:
        model: a functional or Sequential Keras model (a Sequential one is read through a
            functional copy); read only.

    Returns:
        Its layers by name with their producers and consumers, call counts, first-call
        shapes, topological order and the layers giving its outputs.
    """
    if isinstance(model, keras.Sequential):
        from devicefit.spaces.rebuild import as_functional

        model = as_functional(model)
    view = GraphView(layers={})
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            op = node.operation
            name = op.name
            if name not in view.layers:
                view.layers[name] = op
                view.order.append(name)
                view.consumers[name] = []
                ins = [tuple(t.shape) for t in node.input_tensors]
                outs = [tuple(t.shape) for t in node.outputs]
                view.shapes[name] = (ins[0] if ins else (), outs[0] if outs else ())
                view.inputs[name] = [t._keras_history.operation.name for t in node.input_tensors]
                if len(node.outputs) > 1:
                    view.multi_output.add(name)
            view.calls[name] = view.calls.get(name, 0) + 1
            for tensor in node.input_tensors:
                producer = tensor._keras_history.operation.name
                view.consumers.setdefault(producer, []).append(name)
                view.all_inputs.setdefault(name, set()).add(producer)
    view.outputs = {t._keras_history.operation.name for t in model.outputs}
    return view


@dataclass(frozen=True)
class Segment:
    group: int
    length: int


@dataclass(frozen=True)
class Layout:
    """A tensor's last axis: ``positions`` repeats (after Flatten) of the segments in order."""

    segments: tuple[Segment, ...]
    positions: int = 1

    @property
    def channels(self) -> int:
        return sum(s.length for s in self.segments)

    def groups(self) -> list[int]:
        """The channel group of each segment.

        Returns:
            One group id per segment, in order.
        """
        return [s.group for s in self.segments]

    def offsets(self) -> list[tuple[Segment, int]]:
        """Where each segment starts on the last axis (within one position, after a Flatten).

        Returns:
            (segment, the index of its first channel) per segment, in order.
        """
        out, start = [], 0
        for seg in self.segments:
            out.append((seg, start))
            start += seg.length
        return out


@dataclass
class Member:
    layer: str
    role: str  # "out": the layer's filters; "in": its input rows; "pass": per-channel weights
    offset: int  # where the group's channels start on that layer's channel axis


@dataclass
class Group:
    """Channels that are pruned together, with every layer slice they touch."""

    id: int
    size: int
    members: list[Member] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)  # reasons; empty = prunable

    def layers(self, role: str) -> list[str]:
        """The layers that take part in the group in one role.

        Args:
            role: "out" (their filters make the channels), "in" (their input rows read them) or
                "pass" (channel-wise layers the channels go through).

        Returns:
            Their names, in the order they joined the group.
        """
        return [m.layer for m in self.members if m.role == role]

    @property
    def name(self) -> str:
        producers = self.layers("out")
        return producers[0] if producers else f"group{self.id}"


@dataclass
class DependencyGraph:
    view: GraphView
    in_layout: dict[str, Layout]  # the layout of each layer's (first) input
    out_layout: dict[str, Layout]
    groups: dict[int, Group]  # only root groups, after merges
    notes: dict[str, str]  # layer -> why the graph left it alone

    def prunable(self) -> list[Group]:
        """The groups channel pruning may thin.

        Returns:
            Every group that is not frozen and has at least one producer.
        """
        return [g for g in self.groups.values() if not g.frozen and g.layers("out")]

    def frozen(self) -> list[Group]:
        """The groups left exactly as they are.

        Returns:
            Every frozen group (its ``frozen`` says why), with producers or not.
        """
        return [g for g in self.groups.values() if g.frozen]

    def group_of(self, layer: str) -> Group | None:
        """The group of ``layer``'s output channels, when it produces exactly one.

        Args:
            layer: a layer's name.

        Returns:
            That group, or None when the output spans several groups (a Concatenate) or has no
            known layout.
        """
        layout = self.out_layout.get(layer)
        if layout is None or len(layout.segments) != 1:
            return None
        return self.groups.get(layout.segments[0].group)

    def index(self, layout: Layout, keep: dict[int, np.ndarray]) -> np.ndarray | None:
        """The kept positions of a tensor's last axis, or None when nothing changes.

        Args:
            layout: the tensor's channel layout.
            keep: group id -> the sorted indices of the channels it keeps.

        Returns:
            Indices into the last axis, for every position of a flattened tensor; None when
            ``keep`` names none of the layout's groups.
        """
        if not any(s.group in keep for s in layout.segments):
            return None
        parts = [
            offset + keep.get(seg.group, np.arange(seg.length)) for seg, offset in layout.offsets()
        ]
        per_position = np.concatenate(parts).astype(np.int64)
        if layout.positions == 1:
            return per_position
        width = layout.channels
        return (np.arange(layout.positions)[:, None] * width + per_position[None, :]).ravel()


class _Builder:
    def __init__(self, view: GraphView) -> None:
        self.view = view
        self.parent: dict[int, int] = {}
        self.groups: dict[int, Group] = {}
        self.in_layout: dict[str, Layout] = {}
        self.out_layout: dict[str, Layout] = {}
        self.notes: dict[str, str] = {}

    # -- groups (union-find) -------------------------------------------------
    def new_group(self, size: int) -> int:
        """Start a new channel group, its own root.

        Args:
            size: its number of channels.

        Returns:
            The new group's id.
        """
        gid = len(self.parent)
        self.parent[gid] = gid
        self.groups[gid] = Group(gid, size)
        return gid

    def root(self, gid: int) -> int:
        """The group ``gid`` has been merged into (union-find, halving the path on the way).

        Args:
            gid: a group id, merged or not.

        Returns:
            The root group's id (``gid`` itself when it was never merged).
        """
        while self.parent[gid] != gid:
            self.parent[gid] = self.parent[self.parent[gid]]
            gid = self.parent[gid]
        return gid

    def unite(self, a: int, b: int) -> None:
        """Merge two groups: ``b``'s root joins ``a``'s with its members and freeze reasons.

        Args:
            a: a group id; its root stays the root.
            b: a group id; its root is merged into ``a``'s.
        """
        a, b = self.root(a), self.root(b)
        if a == b:
            return
        keep, gone = self.groups[a], self.groups.pop(b)
        keep.members += gone.members
        keep.frozen += gone.frozen
        self.parent[b] = a

    def freeze(self, layout: Layout | None, reason: str) -> None:
        """Freeze every group ``layout`` touches, recording ``reason`` once per group.

        Args:
            layout: the tensor's layout; None (no known layout) freezes nothing.
            reason: why, as the notes will say it.
        """
        for gid in layout.groups() if layout else []:
            group = self.groups[self.root(gid)]
            if reason not in group.frozen:
                group.frozen.append(reason)

    def add_members(self, layout: Layout, layer: str, role: str) -> None:
        """Record ``layer`` as a member of every group of ``layout``, at each segment's offset.

        Args:
            layout: the layout of the tensor the layer makes or reads.
            layer: the layer's name.
            role: "out", "in" or "pass" (see ``Member``).
        """
        for seg, offset in layout.offsets():
            self.groups[self.root(seg.group)].members.append(Member(layer, role, offset))

    def fresh(self, channels: int | None) -> Layout | None:
        """A layout of one new group.

        Args:
            channels: the tensor's channel count, None when unknown.

        Returns:
            The layout, or None when ``channels`` is None.
        """
        if channels is None:
            return None
        return Layout((Segment(self.new_group(channels), channels),))

    # -- layers ----------------------------------------------------------------
    def build(self) -> DependencyGraph:
        """Visit every layer, then freeze the groups reaching a model output or an unknown layer.

        Returns:
            The dependency graph: the root groups, every layout pointing at them, and the notes
            on the layers the graph does not know.
        """
        for name in self.view.order:
            self.visit(name)
        for name in self.view.outputs:
            self.freeze(self.out_layout.get(name), f"reaches the model output {name!r}")
        for name, why in self.notes.items():  # a shared layer's other calls read more tensors
            for producer in sorted(self.view.all_inputs.get(name, ())):
                self.freeze(self.out_layout.get(producer), f"reaches {why}")
        groups = {}
        for gid in self.groups:
            root = self.root(gid)
            groups[root] = self.groups[root]
        # Segments keep the group ids they were made with; point them at the roots.
        fix = {name: self._resolve(lay) for name, lay in self.out_layout.items()}
        ins = {name: self._resolve(lay) for name, lay in self.in_layout.items()}
        return DependencyGraph(self.view, ins, fix, groups, self.notes)

    def _resolve(self, layout: Layout) -> Layout:
        segs = tuple(Segment(self.root(s.group), s.length) for s in layout.segments)
        return Layout(segs, layout.positions)

    def visit(self, name: str) -> None:
        """Give layer ``name``'s output a layout and join it to the groups of its inputs.

        Args:
            name: the layer; its producers are visited already (topological order).
        """
        view, layer = self.view, self.view.layers[name]
        inputs = [self.out_layout.get(p) for p in view.inputs.get(name, [])]
        out_channels = _channels(view.shapes[name][1])
        if inputs and inputs[0] is not None:
            self.in_layout[name] = inputs[0]
        if isinstance(layer, L.InputLayer) or not view.inputs.get(name):
            layout = self.fresh(out_channels)
            if layout:
                self.out_layout[name] = layout
                self.freeze(layout, f"comes from the model input {name!r}")
            return
        problem = self.problem(name, layer, inputs)
        if problem:
            self.unknown(name, inputs, out_channels, problem)
            return
        # problem() turned away inputs without a layout and unknown sizes.
        layouts = cast(list[Layout], inputs)
        if isinstance(layer, PRODUCERS):
            self.add_members(layouts[0], name, "in")
            layout = self.fresh(out_channels)
            assert layout is not None  # problem() turned away an unknown channel count
            self.out_layout[name] = layout
            self.add_members(layout, name, "out")
            act = _activation_name(getattr(layer, "activation", None))
            if act not in ELEMENTWISE:
                self.freeze(layout, f"{name!r} has activation {act!r}, which mixes channels")
        elif isinstance(layer, CHANNELWISE):
            self.add_members(layouts[0], name, "pass")
            self.out_layout[name] = layouts[0]
        elif isinstance(layer, GLOBAL_POOLING):
            self.out_layout[name] = layouts[0]
        elif isinstance(layer, L.Flatten) or (
            isinstance(layer, L.Reshape) and _reshape_kind(view, name) == "flatten"
        ):
            spatial = prod(int(d) for d in _known(view.shapes[name][0][1:-1]))
            self.out_layout[name] = Layout(layouts[0].segments, layouts[0].positions * spatial)
        elif isinstance(layer, L.Reshape):  # keeps the last axis: the layout as it was
            self.out_layout[name] = layouts[0]
        elif isinstance(layer, L.Concatenate) and _concat_on_channels(layer, view, name):
            segs = tuple(s for lay in layouts for s in lay.segments)
            self.out_layout[name] = Layout(segs)
        else:  # an element-wise merge (or a Concatenate along another axis)
            self.out_layout[name] = self.merge(name, layouts)

    def merge(self, name: str, inputs: list[Layout]) -> Layout:
        """Unite the groups of an element-wise merge's inputs, channel by channel.

        Inputs of one channel (broadcast) are left out when others have more; inputs split into
        segments differently are frozen instead.

        Args:
            name: the merging layer's name, for the freeze reason.
            inputs: its inputs' layouts.

        Returns:
            The output's layout: the first full input's.
        """
        full = [lay for lay in inputs if lay.channels > 1 or len(inputs) == 1]
        full = full or inputs
        first = full[0]
        for other in full[1:]:
            same = [s.length for s in other.segments] == [s.length for s in first.segments]
            if same and other.positions == first.positions:
                for a, b in zip(first.segments, other.segments, strict=True):
                    self.unite(a.group, b.group)
            else:
                reason = f"{name!r} merges tensors whose channels are split differently"
                self.freeze(first, reason)
                self.freeze(other, reason)
        return first

    def problem(self, name: str, layer: Any, inputs: list[Layout | None]) -> str | None:
        """Why the graph cannot follow channels through ``layer``, or None.

        Args:
            name: the layer's name.
            layer: the layer (or operation) called there.
            inputs: the layouts of its inputs, None where unknown.

        Returns:
            The reason, naming the layer, or None when the graph understands it.
        """
        kind = type(layer).__name__
        if not isinstance(layer, keras.layers.Layer) or isinstance(layer, keras.Model):
            return f"{kind} {name!r} is an operation the dependency graph does not know"
        known = (
            *PRODUCERS,
            *CHANNELWISE,
            *GLOBAL_POOLING,
            *MERGES,
            L.Flatten,
            L.Reshape,
            L.Concatenate,
        )
        if type(layer) not in known:  # exact types: a subclass may change the maths
            return f"{kind} {name!r} is a layer type the dependency graph does not know"
        if any(lay is None for lay in inputs):
            return f"{kind} {name!r} reads a tensor without a known channel layout"
        if self.view.calls.get(name, 0) != 1:
            return f"{kind} {name!r} is called {self.view.calls.get(name, 0)} times (shared)"
        if name in self.view.multi_output:
            return f"{kind} {name!r} has several outputs"
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return f"{kind} {name!r} is channels_first"
        if _channels(self.view.shapes[name][1]) is None:
            return f"{kind} {name!r} has an unknown channel count"
        layouts = cast(list[Layout], inputs)  # none is None: checked above
        return _layer_problem(name, layer, layouts, self.view)

    def unknown(
        self, name: str, inputs: list[Layout | None], channels: int | None, why: str
    ) -> None:
        """Take in a layer the graph cannot follow: note ``why``, freeze its inputs' groups and give
        its output a new, frozen group.

        Args:
            name: the layer's name.
            inputs: its inputs' layouts, None where unknown.
            channels: its output's channel count, None when unknown.
            why: the reason ``problem`` gave.
        """
        self.notes[name] = why
        for layout in inputs:
            self.freeze(layout, f"reaches {why}")
        layout = self.fresh(channels)
        if layout:
            self.out_layout[name] = layout
            self.freeze(layout, f"comes out of {why}")


def _layer_problem(name: str, layer: Any, inputs: list[Layout], view: GraphView) -> str | None:
    kind = type(layer).__name__
    weights = layer.weights
    if isinstance(layer, PRODUCERS):
        expected = (3 if isinstance(layer, L.SeparableConv2D) else 2) - int(not layer.use_bias)
        if len(weights) != expected:
            return f"{kind} {name!r} has extra weights (LoRA or quantized)"
        if getattr(layer, "groups", 1) != 1:
            return f"{kind} {name!r} is a grouped convolution"
        if isinstance(layer, L.SeparableConv2D) and layer.depth_multiplier != 1:
            return f"{kind} {name!r} has depth multiplier {layer.depth_multiplier}"
        if not isinstance(layer, L.Dense) and inputs[0].positions != 1:
            return f"{kind} {name!r} reads a flattened tensor"
    if isinstance(layer, L.DepthwiseConv2D):
        if layer.depth_multiplier != 1:
            return f"{kind} {name!r} has depth multiplier {layer.depth_multiplier}"
        act = _activation_name(layer.activation)
        if act not in ELEMENTWISE:
            return f"{kind} {name!r} has activation {act!r}, which mixes channels"
    if isinstance(layer, L.Activation):
        act = _activation_name(layer.activation)
        if act not in ELEMENTWISE:
            return f"{kind} {name!r} is {act!r}, which mixes channels"
    rank = len(view.shapes[name][0])
    axis = getattr(layer, "axis", -1)
    if isinstance(layer, (L.BatchNormalization, L.LayerNormalization)):
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if [a % rank for a in axes] != [rank - 1]:
            return f"{kind} {name!r} normalizes axis {axis}, not only the channels"
    if (
        isinstance(layer, L.PReLU)
        and layer.shared_axes
        and rank - 1 in [a % rank for a in layer.shared_axes]
    ):
        return f"{kind} {name!r} shares its slope across channels"
    if isinstance(layer, L.Flatten):
        if inputs[0].positions != 1 or any(d is None for d in view.shapes[name][0][1:]):
            return f"{kind} {name!r} has an input of unknown size"
    if isinstance(layer, L.Reshape):
        if any(d is None for d in (*view.shapes[name][0][1:], *view.shapes[name][1][1:])):
            return f"{kind} {name!r} has an input or output of unknown size"
        if _reshape_kind(view, name) is None:
            return f"{kind} {name!r} mixes channels with other axes"
    if isinstance(layer, (*CHANNELWISE, *GLOBAL_POOLING)) and inputs[0].positions != 1:
        if not isinstance(layer, (L.Dropout, L.Activation, L.ReLU, L.Identity)):
            return f"{kind} {name!r} reads a flattened tensor"
    if isinstance(layer, L.Concatenate) and any(lay.positions != 1 for lay in inputs):
        return f"{kind} {name!r} concatenates flattened tensors"
    return None


def _reshape_kind(view: GraphView, name: str) -> str | None:
    """How a Reshape moves the channels: "keep" when the last axis is unchanged (channel k
    stays channel k, row-major), "flatten" when everything folds into it (as Flatten),
    else None (channels and positions mix)."""
    before, after = view.shapes[name]
    if before[-1] == after[-1]:
        return "keep"
    if len(before) > 2 and after[-1] == prod(int(d) for d in _known(before[1:])):
        return "flatten"
    return None


def _concat_on_channels(layer: Any, view: GraphView, name: str) -> bool:
    rank = len(view.shapes[name][1])
    return layer.axis % rank == rank - 1


def _known(sizes: Shape) -> tuple[int, ...]:
    """``sizes`` that _layer_problem has checked are all known (it turns away a Flatten or
    Reshape of unknown size before anything multiplies them)."""
    return cast(tuple[int, ...], sizes)


def _channels(shape: Shape) -> int | None:
    if not shape:
        return None
    last = shape[-1]
    return int(last) if last is not None else None


def _activation_name(fn: Any) -> str:
    if fn is None:
        return "linear"
    try:
        name = keras.activations.serialize(fn)
    except Exception:  # noqa: BLE001 - unserializable custom activation
        return repr(fn)
    return name if isinstance(name, str) else repr(name)


def dependency_graph(model: keras.Model) -> DependencyGraph:
    """The channel groups of ``model`` (Sequential or functional).

    Args:
        model: the Keras model; read only.

    Returns:
        Its channel groups, prunable and frozen, every layer's input and output layout, and
        the notes on the layers the graph leaves alone.
    """
    return _Builder(graph_view(model)).build()

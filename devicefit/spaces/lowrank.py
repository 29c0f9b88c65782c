"""Low-rank factorization of Dense and Conv2D layers by truncated SVD.

Dense ``W (in, units)`` becomes ``Dense(r, linear, no bias) -> Dense(units)``.
Conv2D ``kh x kw`` becomes a ``kh x 1`` conv to ``r`` channels followed by a
``1 x kw`` conv (Jaderberg et al. 2014, "Speeding up CNNs with low rank
expansions", scheme 2), from the SVD of the kernel unfolded as
``M[(i, c), (j, o)] = W[i, j, c, o]``. Strides, dilation and padding are split
per axis, which is exact because 'same'/'valid' padding of one axis depends
only on that axis' size, kernel, stride and dilation.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import Applied, GraphTechnique, layer_value
from devicefit.spaces.graph import GraphView, graph_view
from devicefit.spaces.lowrank_conv import (
    CONV_METHODS,
    RANK_RULES,
    channel_factors,
    conv_costs,
    mode_unfoldings,
    rank_of,
    tucker2_factors,
)
from devicefit.spaces.params import Choice, FloatRange
from devicefit.spaces.rebuild import as_functional, clone_with, plain_weights, rebuild, unique_name

silence_tensorflow()

import keras  # noqa: E402 - after silence_tensorflow()

EXACT_SVD_MAX_SIDE = 256  # exact SVD up to this smaller side: a fraction of a second
Factors = tuple[list[keras.layers.Layer], dict[str, list[np.ndarray]]]


def split_svd(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """``A (m, r)``, ``B (r, n)`` with ``A @ B`` the best rank-``r`` approximation of ``matrix``.

    The singular values are split evenly (sqrt into each factor) so both
    factors have similar scales, which suits later int8 quantization. Large
    matrices use a randomized SVD: an exact one of a ResNet-50 3x3x512 kernel
    (1536 x 1536) takes ~10-20 s on a small CPU and a trial factorizes dozens,
    while the randomized one (Halko et al. 2011) takes well under a second and
    is near-optimal for the small ranks that actually save compute.

    Args:
        matrix: the 2-D matrix to approximate.
        rank: ``r``, at most ``min(matrix.shape)``.

    Returns:
        The factors ``A`` and ``B``, float32.
    """
    side = min(matrix.shape)
    if side <= EXACT_SVD_MAX_SIDE or rank > side // 2:
        u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    else:
        from sklearn.utils.extmath import randomized_svd

        u, s, vt = randomized_svd(matrix.astype(np.float32), rank, random_state=0)
    root = np.sqrt(s[:rank])
    return (u[:, :rank] * root).astype(np.float32), (root[:, None] * vt[:rank]).astype(np.float32)


def conv_factors(kernel: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Kernels ``(kh, 1, cin, r)``, ``(1, kw, r, cout)``; composed they approximate ``kernel``.

    Args:
        kernel: a Conv2D kernel ``(kh, kw, cin, cout)``.
        rank: ``r``, the channels between the two convolutions.

    Returns:
        The two kernels, float32, from the SVD of ``kernel`` unfolded as
        ``M[(i, c), (j, o)] = W[i, j, c, o]``.
    """
    kh, kw, cin, cout = kernel.shape
    matrix = kernel.transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)
    a, b = split_svd(matrix, rank)
    first = a.reshape(kh, cin, rank)[:, None, :, :]
    second = b.reshape(rank, kw, cout).transpose(1, 0, 2)[None, ...]
    return first, second


class LowRank(GraphTechnique):
    """Factorize every Dense and Conv2D whose low-rank form is cheaper than the original.

    ``rank_rule`` reads ``rank_ratio`` as a fraction of the full rank (``ratio``) or
    of the singular values' energy to keep (``energy``); ``method`` picks the Conv2D
    scheme (spatial, channel, tucker2; 1x1 convs always split by channels). Layers
    whose factorized form would not cut both MACs and parameters are left alone, so
    ``rank_ratio`` 1.0 changes nothing.
    """

    name = "lowrank"
    recipe = {"rank_ratio": 0.5}  # the one-technique recipe's setting
    structural = True
    default_ranges = {
        "rank_ratio": FloatRange(0.1, 1.0),
        "method": Choice(CONV_METHODS),
        "rank_rule": Choice(RANK_RULES),
    }
    layer_params = {"rank_ratio": FloatRange(0.1, 1.0)}

    def identity_params(self) -> dict[str, Any]:
        return {"rank_ratio": 1.0, "method": "spatial", "rank_rule": "ratio"}

    def strong_params(self) -> dict[str, Any]:
        return {"rank_ratio": 0.1, "method": "tucker2", "rank_rule": "ratio"}

    def explain(self, model: keras.Model) -> dict[str, tuple[bool, str]]:
        """At the strong setting, from shapes alone: no SVD is computed."""
        functional = as_functional(model)
        view = graph_view(functional)
        strong = self.strong_params()
        result = {}
        for layer in functional.layers:
            kind = type(layer)
            if kind not in (keras.layers.Dense, keras.layers.Conv2D):
                if layer.weights:
                    result[layer.name] = (False, f"{kind.__name__} is not Dense or Conv2D")
                continue
            if not plain_weights(layer):
                # Never Factors here: with build=False nothing is built.
                why: Factors | str | None = "it has extra weights (LoRA or quantized)"
            elif kind is keras.layers.Dense:
                why = _factor_dense(layer, strong["rank_ratio"], "ratio", set(), build=False)
            else:
                why = _factor_conv(
                    layer, strong["rank_ratio"], "ratio", "tucker2", view, set(), build=False
                )
            ok = why is None
            result[layer.name] = (ok, "factorizable" if ok else f"not factorized, {why}")
        return result

    def rewrite(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        method = str(params.get("method", "spatial"))
        rule = str(params.get("rank_rule", "ratio"))
        if method not in CONV_METHODS or rule not in RANK_RULES:
            raise ValueError(
                f"{self.name}: method must be one of {', '.join(CONV_METHODS)} and rank_rule "
                f"one of {', '.join(RANK_RULES)}, got {method!r}, {rule!r}"
            )
        functional = as_functional(model)
        view = graph_view(functional)
        ratios = {name: float(layer_value(params, name, "rank_ratio", 1.0)) for name in view.order}
        bad = {name: r for name, r in ratios.items() if not 0.0 < r <= 1.0}
        if bad:
            raise ValueError(f"{self.name}.rank_ratio must be in (0, 1], got {bad}")
        taken = set(view.layers)
        replace: dict[str, list[keras.layers.Layer]] = {}
        weights: dict[str, list[np.ndarray]] = {}
        notes: list[str] = []
        for name in view.order:
            layer, ratio = view.layers[name], ratios[name]
            if type(layer) in (keras.layers.Dense, keras.layers.Conv2D) and not plain_weights(
                layer
            ):
                result: Factors | str | None = "it has extra weights (LoRA or quantized)"
            elif type(layer) is keras.layers.Dense:
                result = _factor_dense(layer, ratio, rule, taken)
            elif type(layer) is keras.layers.Conv2D:
                result = _factor_conv(layer, ratio, rule, method, view, taken)
            else:
                continue
            if result is None or isinstance(result, str):
                notes.append(f"{name}: not factorized, {result}")
                continue
            replace[name], new_weights = result
            weights.update(new_weights)
            shapes = [tuple(new_weights[n.name][0].shape) for n in replace[name]]
            notes.append(f"{name}: factorized into {shapes} ({type(layer).__name__})")
        if not replace:
            return Applied(functional, notes)
        return Applied(rebuild(functional, replace, weights), notes)


def _factor_dense(
    layer: Any, value: float, rule: str, taken: set[str], build: bool = True
) -> Factors | str | None:
    kernel, *bias = layer.get_weights()
    n_in, units = kernel.shape
    full = min(n_in, units)
    rank = rank_of(kernel, value, rule)
    if rank * (n_in + units) >= n_in * units:
        return f"rank {rank} of {full} would not reduce {n_in}x{units} weights"
    if not build:
        return None
    a, b = split_svd(kernel, rank)
    first_name = unique_name(taken, f"{layer.name}_lowrank")
    first = keras.layers.Dense(rank, use_bias=False, name=first_name, dtype=layer.dtype_policy)
    second = clone_with(layer)  # keeps the name, bias, activation and regularizers
    return [first, second], {first_name: [a], layer.name: [b, *bias]}


def _factor_conv(
    layer: Any,
    value: float,
    rule: str,
    method: str,
    view: GraphView,
    taken: set[str],
    build: bool = True,
) -> Factors | str | None:
    """The layers and weights replacing ``layer``, or why it stays; with ``build``
    False, None where it would be factorized (nothing is computed)."""
    if layer.groups != 1:
        return "grouped convolution"
    if layer.data_format != "channels_last":
        return "channels_first"
    kernel, *bias = layer.get_weights()
    kh, kw, cin, cout = kernel.shape
    if kh == kw == 1:
        method = "channel"  # a 1x1 conv is a matrix: only the channel split applies
    if method == "spatial":
        ranks = (rank_of(_spatial_matrix(kernel), value, rule),) * 2
    elif method == "channel":
        matrix = kernel.reshape(kh * kw * cin, cout)
        ranks = (rank_of(matrix, value, rule),) * 2
    else:
        by_in, by_out = mode_unfoldings(kernel)
        ranks = (
            rank_of(by_in, value, rule),
            rank_of(by_out, value, rule),
        )
    in_hw, out_hw = _sizes(layer, view)
    before = (out_hw[0] * out_hw[1] * kh * kw * cin * cout, kh * kw * cin * cout)
    after = conv_costs(method, (kh, kw, cin, cout), ranks, in_hw, out_hw)
    if after[0] >= before[0] or after[1] >= before[1]:
        return (
            f"{method} rank {ranks[0] if method != 'tucker2' else ranks} would not reduce "
            f"MACs/params ({before[0]}/{before[1]} -> {after[0]}/{after[1]})"
        )
    if not build:
        return None
    return _BUILDERS[method](layer, kernel, bias, ranks, taken)


def _spatial_matrix(kernel: np.ndarray) -> np.ndarray:
    kh, kw, cin, cout = kernel.shape
    return kernel.transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)


def _conv(layer: Any, name: str, filters: int, kernel_size: Any, **kwargs: Any) -> Any:
    return keras.layers.Conv2D(
        filters, kernel_size, use_bias=False, name=name, dtype=layer.dtype_policy, **kwargs
    )


def _build_spatial(layer: Any, kernel: Any, bias: list, ranks: Any, taken: set[str]) -> Factors:
    rank = ranks[0]
    kh, kw = kernel.shape[:2]
    first_kernel, second_kernel = conv_factors(kernel, rank)
    (sh, sw), (dh, dw) = layer.strides, layer.dilation_rate
    first_name = unique_name(taken, f"{layer.name}_lowrank")
    first = _conv(
        layer, first_name, rank, (kh, 1), strides=(sh, 1), padding=layer.padding,
        dilation_rate=(dh, 1),
    )  # fmt: skip
    second = clone_with(layer, kernel_size=(1, kw), strides=(1, sw), dilation_rate=(1, dw))
    return [first, second], {first_name: [first_kernel], layer.name: [second_kernel, *bias]}


def _build_channel(layer: Any, kernel: Any, bias: list, ranks: Any, taken: set[str]) -> Factors:
    first_kernel, second_kernel = channel_factors(kernel, ranks[0])
    first_name = unique_name(taken, f"{layer.name}_lowrank")
    first = _conv(
        layer, first_name, ranks[0], layer.kernel_size, strides=layer.strides,
        padding=layer.padding, dilation_rate=layer.dilation_rate,
    )  # fmt: skip
    second = clone_with(layer, kernel_size=(1, 1), strides=(1, 1), dilation_rate=(1, 1))
    return [first, second], {first_name: [first_kernel], layer.name: [second_kernel, *bias]}


def _build_tucker2(layer: Any, kernel: Any, bias: list, ranks: Any, taken: set[str]) -> Factors:
    first_kernel, core_kernel, last_kernel = tucker2_factors(kernel, *ranks)
    first_name = unique_name(taken, f"{layer.name}_tucker_in")
    core_name = unique_name(taken, f"{layer.name}_tucker_core")
    first = _conv(layer, first_name, ranks[0], (1, 1))
    core = _conv(
        layer, core_name, ranks[1], layer.kernel_size, strides=layer.strides,
        padding=layer.padding, dilation_rate=layer.dilation_rate,
    )  # fmt: skip
    last = clone_with(layer, kernel_size=(1, 1), strides=(1, 1), dilation_rate=(1, 1))
    weights = {
        first_name: [first_kernel],
        core_name: [core_kernel],
        layer.name: [last_kernel, *bias],
    }
    return [first, core, last], weights


_BUILDERS = {"spatial": _build_spatial, "channel": _build_channel, "tucker2": _build_tucker2}


def _sizes(layer: Any, view: GraphView) -> tuple[tuple[int, int], tuple[int, int]]:
    """Input and output (h, w); per output pixel (1, 1) when sizes are unknown."""
    in_shape, out_shape = view.shapes[layer.name]
    sizes = (*in_shape[1:3], *out_shape[1:3])
    if any(d is None for d in sizes):
        sh, sw = layer.strides
        return (sh, sw), (1, 1)
    known = cast(tuple[int, ...], sizes)  # none is None: checked above
    return (int(known[0]), int(known[1])), (int(known[2]), int(known[3]))

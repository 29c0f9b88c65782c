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

from typing import Any

import numpy as np

from devicefit.quiet import silence_tensorflow
from devicefit.spaces.base import Applied, Technique
from devicefit.spaces.graph import (
    GraphView,
    as_functional,
    clone_with,
    graph_view,
    plain_weights,
    rebuild,
    unique_name,
)
from devicefit.spaces.params import FloatRange

silence_tensorflow()

import keras  # noqa: E402

EXACT_SVD_MAX_SIDE = 256  # exact SVD up to this smaller side: a fraction of a second
Factors = tuple[list[keras.layers.Layer], dict[str, list[np.ndarray]]]


def rank_for(ratio: float, full_rank: int) -> int:
    return max(1, min(full_rank, int(round(ratio * full_rank))))


def split_svd(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """``A (m, r)``, ``B (r, n)`` with ``A @ B`` the best rank-``r`` approximation of ``matrix``.

    The singular values are split evenly (sqrt into each factor) so both
    factors have similar scales, which suits later int8 quantization. Large
    matrices use a randomized SVD: an exact one of a ResNet-50 3x3x512 kernel
    (1536 x 1536) takes ~10-20 s on a small CPU and a trial factorizes dozens,
    while the randomized one (Halko et al. 2011) takes well under a second and
    is near-optimal for the small ranks that actually save compute.
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
    """Kernels ``(kh, 1, cin, r)``, ``(1, kw, r, cout)``; composed they approximate ``kernel``."""
    kh, kw, cin, cout = kernel.shape
    matrix = kernel.transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)
    a, b = split_svd(matrix, rank)
    first = a.reshape(kh, cin, rank)[:, None, :, :]
    second = b.reshape(rank, kw, cout).transpose(1, 0, 2)[None, ...]
    return first, second


class LowRank(Technique):
    """Factorize every Dense and Conv2D whose rank-``r`` form is cheaper than the original.

    ``r = max(1, round(rank_ratio * full_rank))``; layers where the two-layer
    form would not cut both MACs and parameters are left alone (so ratio 1.0
    changes nothing).
    """

    name = "lowrank"
    stage = "graph"
    structural = True
    default_ranges = {"rank_ratio": FloatRange(0.1, 1.0)}

    def identity_params(self) -> dict[str, Any]:
        return {"rank_ratio": 1.0}

    def strong_params(self) -> dict[str, Any]:
        return {"rank_ratio": 0.1}

    def rewrite(self, model: keras.Model, params: dict[str, Any]) -> Applied:
        ratio = float(params.get("rank_ratio", 1.0))
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"{self.name}.rank_ratio must be in (0, 1], got {ratio}")
        functional = as_functional(model)
        view = graph_view(functional)
        taken = set(view.layers)
        replace: dict[str, list[keras.layers.Layer]] = {}
        weights: dict[str, list[np.ndarray]] = {}
        notes: list[str] = []
        for name in view.order:
            layer = view.layers[name]
            if type(layer) in (keras.layers.Dense, keras.layers.Conv2D) and not plain_weights(
                layer
            ):
                result = "it has extra weights (LoRA or quantized)"
            elif type(layer) is keras.layers.Dense:
                result = _factor_dense(layer, ratio, taken)
            elif type(layer) is keras.layers.Conv2D:
                result = _factor_conv(layer, ratio, view, taken)
            else:
                continue
            if isinstance(result, str):
                notes.append(f"{name}: not factorized, {result}")
                continue
            replace[name], new_weights = result
            weights.update(new_weights)
            rank = new_weights[name][0].shape[-2]  # the second factor's input size
            notes.append(f"{name}: factorized at rank {rank} ({type(layer).__name__})")
        if not replace:
            return Applied(functional, notes)
        return Applied(rebuild(functional, replace, weights), notes)


def _factor_dense(layer: Any, ratio: float, taken: set[str]) -> Factors | str:
    kernel, *bias = layer.get_weights()
    n_in, units = kernel.shape
    full = min(n_in, units)
    rank = rank_for(ratio, full)
    if rank * (n_in + units) >= n_in * units:
        return f"rank {rank} of {full} would not reduce {n_in}x{units} weights"
    a, b = split_svd(kernel, rank)
    first_name = unique_name(taken, f"{layer.name}_lowrank")
    first = keras.layers.Dense(rank, use_bias=False, name=first_name, dtype=layer.dtype_policy)
    second = clone_with(layer)  # keeps the name, bias, activation and regularizers
    return [first, second], {first_name: [a], layer.name: [b, *bias]}


def _factor_conv(layer: Any, ratio: float, view: GraphView, taken: set[str]) -> Factors | str:
    if layer.groups != 1:
        return "grouped convolution"
    if layer.data_format != "channels_last":
        return "channels_first"
    kernel, *bias = layer.get_weights()
    kh, kw, cin, cout = kernel.shape
    full = min(kh * cin, kw * cout)
    rank = rank_for(ratio, full)
    before, after = _conv_costs(layer, view, rank)
    if after[0] >= before[0] or after[1] >= before[1]:
        return (
            f"rank {rank} of {full} would not reduce MACs/params "
            f"({before[0]}/{before[1]} -> {after[0]}/{after[1]})"
        )
    first_kernel, second_kernel = conv_factors(kernel, rank)
    (sh, sw), (dh, dw) = layer.strides, layer.dilation_rate
    first_name = unique_name(taken, f"{layer.name}_lowrank")
    first = keras.layers.Conv2D(
        rank,
        (kh, 1),
        strides=(sh, 1),
        padding=layer.padding,
        dilation_rate=(dh, 1),
        use_bias=False,
        name=first_name,
        dtype=layer.dtype_policy,
    )
    second = clone_with(layer, kernel_size=(1, kw), strides=(1, sw), dilation_rate=(1, dw))
    return [first, second], {first_name: [first_kernel], layer.name: [second_kernel, *bias]}


def _conv_costs(layer: Any, view: GraphView, rank: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(MACs, params) before and after; per output pixel when sizes are unknown."""
    kh, kw = layer.kernel_size
    cin, cout = int(layer.get_weights()[0].shape[2]), layer.filters
    in_shape, out_shape = view.shapes[layer.name]
    sizes = (in_shape[2], out_shape[1], out_shape[2])
    if any(d is None for d in sizes):
        in_w, out_h, out_w = layer.strides[1], 1, 1  # the first conv keeps the input width
    else:
        in_w, out_h, out_w = (int(d) for d in sizes)
    before = (out_h * out_w * kh * kw * cin * cout, kh * kw * cin * cout)
    macs = out_h * in_w * kh * cin * rank + out_h * out_w * kw * rank * cout
    return before, (macs, kh * cin * rank + kw * rank * cout)

"""Conv2D factorizations beyond the spatial k x 1 + 1 x k split, and rank rules.

- ``channel``: ``k x k`` conv to ``r`` filters, then a 1 x 1 conv to the
  original filters (Zhang et al. 2015, "Accelerating Very Deep Convolutional
  Networks"), from the SVD of the kernel unfolded as ``(kh*kw*cin, cout)``.
- ``tucker2``: 1 x 1 conv ``cin -> r1``, ``k x k`` core ``r1 -> r2``, 1 x 1
  conv ``r2 -> cout`` (Kim et al. 2016, "Compression of Deep Convolutional
  Neural Networks for Fast and Low Power Mobile Applications"), by HOSVD of the
  kernel's input- and output-channel modes.

Both are exact at full rank: the first factor has no bias, so the zero padding
of the spatial conv commutes with the 1 x 1 maps around it.
"""

from __future__ import annotations

import numpy as np

RANK_RULES = ("ratio", "energy")
CONV_METHODS = ("spatial", "channel", "tucker2")


def choose_rank(singular_values: np.ndarray, value: float, rule: str) -> int:
    """``ratio``: ``round(value * full)``; ``energy``: the fewest singular values whose
    squares hold at least ``value`` of the total (so 1.0 keeps everything).

    Args:
        singular_values: the matrix's singular values, largest first; ``full`` is their count.
        value: the share of the rank (``ratio``) or of the energy (``energy``) to keep.
        rule: "ratio" or "energy".

    Returns:
        The rank, between 1 and ``full``.

    Raises:
        ValueError: ``rule`` is not one of ``RANK_RULES``.
    """
    full = len(singular_values)
    if rule == "ratio":
        return max(1, min(full, int(round(value * full))))
    if rule != "energy":
        raise ValueError(f"lowrank.rank_rule must be one of {', '.join(RANK_RULES)}, got {rule!r}")
    energy = np.cumsum(singular_values.astype(np.float64) ** 2)
    if energy[-1] <= 0 or value >= 1.0:
        return full
    return max(1, min(full, int(np.searchsorted(energy / energy[-1], value - 1e-12) + 1)))


def singular_values(matrix: np.ndarray) -> np.ndarray:
    """The singular values of ``matrix``, computed in float64 (no singular vectors).

    Args:
        matrix: a 2-D matrix.

    Returns:
        Its singular values, largest first.
    """
    return np.linalg.svd(matrix.astype(np.float64), compute_uv=False)


def rank_of(matrix: np.ndarray, value: float, rule: str) -> int:
    """:func:`choose_rank` for ``matrix``; the ratio rule needs only its shape (an SVD
    of every ResNet-50 kernel costs seconds that a ratio never needs).

    Args:
        matrix: the 2-D matrix to factorize.
        value: the share of the rank or of the energy to keep (see ``choose_rank``).
        rule: "ratio" or "energy".

    Returns:
        The rank, between 1 and ``min(matrix.shape)``.

    Raises:
        ValueError: ``rule`` is not one of ``RANK_RULES``.
    """
    if rule == "ratio":
        return choose_rank(np.ones(min(matrix.shape)), value, rule)
    return choose_rank(singular_values(matrix), value, rule)


def channel_factors(kernel: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Kernels ``(kh, kw, cin, r)`` and ``(1, 1, r, cout)``.

    Args:
        kernel: a Conv2D kernel ``(kh, kw, cin, cout)``.
        rank: ``r``, the filters of the first convolution.

    Returns:
        The two kernels, float32, from the SVD of ``kernel`` unfolded as ``(kh*kw*cin, cout)``.
    """
    from devicefit.spaces.lowrank import split_svd

    kh, kw, cin, cout = kernel.shape
    a, b = split_svd(kernel.reshape(kh * kw * cin, cout), rank)
    return a.reshape(kh, kw, cin, rank), b[None, None]


def mode_unfoldings(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernel unfolded along its input-channel and its output-channel axis.

    Args:
        kernel: a Conv2D kernel ``(kh, kw, cin, cout)``.

    Returns:
        A ``(cin, kh*kw*cout)`` and a ``(cout, kh*kw*cin)`` matrix.
    """
    kh, kw, cin, cout = kernel.shape
    by_in = kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)
    by_out = kernel.transpose(3, 0, 1, 2).reshape(cout, kh * kw * cin)
    return by_in, by_out


def tucker2_factors(
    kernel: np.ndarray, rank_in: int, rank_out: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kernels ``(1, 1, cin, r1)``, core ``(kh, kw, r1, r2)``, ``(1, 1, r2, cout)``.

    Args:
        kernel: a Conv2D kernel ``(kh, kw, cin, cout)``.
        rank_in: ``r1``, the channels after the first 1 x 1 convolution.
        rank_out: ``r2``, the channels out of the core.

    Returns:
        The three kernels, float32, from the leading singular vectors of the kernel's
        input- and output-channel unfoldings (HOSVD).
    """
    by_in, by_out = mode_unfoldings(kernel.astype(np.float64))
    u_in = _leading_vectors(by_in, rank_in)  # (cin, r1)
    u_out = _leading_vectors(by_out, rank_out)  # (cout, r2)
    core = np.einsum("hwco,ca,ob->hwab", kernel.astype(np.float64), u_in, u_out)
    return (
        u_in[None, None].astype(np.float32),
        core.astype(np.float32),
        u_out.T[None, None].astype(np.float32),
    )


def _leading_vectors(matrix: np.ndarray, rank: int) -> np.ndarray:
    """The ``rank`` leading left singular vectors; randomized for large matrices
    and small ranks, as in split_svd (exact ones of ResNet-50's unfoldings take seconds)."""
    if min(matrix.shape) <= 256 or rank > min(matrix.shape) // 2:
        return np.linalg.svd(matrix, full_matrices=False)[0][:, :rank]
    from sklearn.utils.extmath import randomized_svd

    return randomized_svd(matrix, rank, random_state=0)[0]


def conv_costs(
    method: str,
    kernel_shape: tuple[int, int, int, int],
    ranks: tuple[int, int],
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
) -> tuple[int, int]:
    """(MACs, params) of the factorized conv (bias excluded, as in the original's count).

    Args:
        method: "spatial", "channel" or "tucker2".
        kernel_shape: the original kernel's ``(kh, kw, cin, cout)``.
        ranks: (r1, r2); spatial and channel read r1 only.
        in_hw: the convolution's input (height, width).
        out_hw: its output (height, width).

    Returns:
        The MACs of one sample and the number of weights.

    Raises:
        ValueError: ``method`` is not one of ``CONV_METHODS``.
    """
    kh, kw, cin, cout = kernel_shape
    r1, r2 = ranks
    in_h, in_w = in_hw
    out_h, out_w = out_hw
    if method == "spatial":  # kh x 1 at (out_h, in_w), then 1 x kw at (out_h, out_w)
        macs = out_h * in_w * kh * cin * r1 + out_h * out_w * kw * r1 * cout
        return macs, kh * cin * r1 + kw * r1 * cout
    if method == "channel":
        return out_h * out_w * (kh * kw * cin * r1 + r1 * cout), kh * kw * cin * r1 + r1 * cout
    if method == "tucker2":
        macs = in_h * in_w * cin * r1 + out_h * out_w * (kh * kw * r1 * r2 + r2 * cout)
        return macs, cin * r1 + kh * kw * r1 * r2 + r2 * cout
    raise ValueError(f"lowrank.method must be one of {', '.join(CONV_METHODS)}, got {method!r}")

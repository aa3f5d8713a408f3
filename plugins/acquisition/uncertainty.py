"""Uncertainty scores from one probability row per item, ``probs`` of shape (n, C).

Every function returns one float per item and higher always means "label first"; the two scores whose natural
reading is "lowest first" (margin, variance) are negated here, once.

Scores come in the input's floating dtype (float32 in, float32 out; anything else is computed in float64), and
the work goes through the pool ``BLOCK_ROWS`` rows at a time, so the temporaries are a block's worth whatever n
is: on a 1,000,000 x 10 float32 pool the extra memory is the 4 MB of scores plus about 1 MB.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from plugins.arrays import Array

# Rows per block: a block of 10 float32 columns fits in the CPU's L2 cache with its temporaries.
BLOCK_ROWS = 16384


def entropy(probs: Array) -> Array:
    """Shannon entropy -sum_c p log p in nats, with 0 log 0 = 0."""

    def block_entropy(p: Array) -> Array:
        logs = np.log(p, out=np.zeros_like(p), where=p > 0)
        logs *= p
        return np.asarray(-logs.sum(axis=1))

    return by_blocks(probs, block_entropy)


def least_confidence(probs: Array) -> Array:
    """1 - max_c p."""

    def block_least_confidence(p: Array) -> Array:
        top = column_extremes(p)[0]
        return np.subtract(1, top, out=top)

    return by_blocks(probs, block_least_confidence)


def margin(probs: Array) -> Array:
    """-(top1 - top2): the smallest gap between the two most likely classes scores highest."""

    def block_margin(p: Array) -> Array:
        if p.shape[1] < 2:
            return np.zeros(len(p), dtype=p.dtype)
        top1, top2 = column_extremes(p)
        return np.subtract(top2, top1, out=top2)

    return by_blocks(probs, block_margin)


def variance(probs: Array) -> Array:
    """-var_c p: the flattest class distribution scores highest."""
    return by_blocks(probs, lambda p: -p.var(axis=1))


def floating(values: ArrayLike) -> Array:
    """``values`` as an array in its own floating dtype, or in float64 when it has none."""
    array = np.asarray(values)
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float64)


def by_blocks(probs: Array, score: Callable[[Array], Array]) -> Array:
    """``score`` applied to blocks of BLOCK_ROWS rows of (n, C) ``probs``; one value per row, in probs' dtype."""
    p = floating(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (n, C), got {p.shape}")
    out = np.empty(len(p), dtype=p.dtype)
    for start in range(0, len(p), BLOCK_ROWS):
        out[start : start + BLOCK_ROWS] = score(p[start : start + BLOCK_ROWS])
    return out


def column_extremes(p: Array) -> tuple[Array, Array]:
    """Per row, the largest and second-largest value (equal when the top is tied), exact in any order.

    One pass over the class columns of the transposed block: with few classes that is several times faster than
    a maximum or a partition along each short row.
    """
    columns = np.ascontiguousarray(p.T)
    top1 = columns[0].copy()
    top2 = np.full(len(top1), -np.inf, dtype=p.dtype)
    lower = np.empty_like(top1)
    for column in columns[1:]:
        np.minimum(top1, column, out=lower)
        np.maximum(top2, lower, out=top2)
        np.maximum(top1, column, out=top1)
    return top1, top2

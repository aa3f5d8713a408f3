"""BADGE (Ash et al. 2020): k-means++ seeding on last-layer gradient embeddings, a batch strategy.

The gradient of the cross-entropy loss with respect to the last linear layer, taking the predicted class as
the label, is g_i = (p_i - onehot(argmax p_i)) outer x_i: its norm measures uncertainty, its direction
diversity. g_i has C*d entries, so it is never built: with a_i = p_i - onehot(argmax p_i),
<g_i, g_j> = <a_i, a_j> <x_i, x_j>, hence
    ||g_i - g_j||^2 = |a_i|^2 |x_i|^2 + |a_j|^2 |x_j|^2 - 2 <a_i, a_j> <x_i, x_j>,
which costs O(n (C + d)) time per new centre and O(n (C + d)) memory.

Each new centre needs <a_i, a_c> and <x_i, x_c> for every candidate: one pass over the (n, C + d) factors,
bound by memory bandwidth. Above ``float32_above`` candidates those two products are taken in float32 (the
class factors stored by column), which halves the bytes per pass; the distances and the draws stay in
float64. At or below it everything is float64, as the selections recorded on small pools were made.
"""

from __future__ import annotations

import numpy as np

from plugins.acquisition.inputs import probs_and_embeddings
from plugins.arrays import Array


def badge(probs: Array, embeddings: Array, budget: int, rng: np.random.Generator,
          float32_above: int | None = None) -> Array:
    """Positions of ``min(budget, n)`` candidates chosen by k-means++ seeding on gradient embeddings.

    Returned in the order chosen. The first centre is the largest gradient embedding (as in the paper's
    reference procedure); each next one is drawn with probability proportional to its squared distance to the
    nearest centre so far. When every remaining distance is 0 (duplicates of chosen points), the next one is
    drawn uniformly from the remaining.
    """
    a, x = gradient_factors(probs, embeddings)
    n = len(x)
    k = min(int(budget), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    a_sq = np.einsum("ij,ij->i", a, a)
    x_sq = np.einsum("ij,ij->i", x, x)
    g_sq = a_sq * x_sq
    if float32_above is not None and n > float32_above:
        # Class factors stored by column: a product with C = 10 columns is four times faster that way.
        a_columns, x = np.ascontiguousarray(a.T, dtype=np.float32), x.astype(np.float32)

        def inner(c: int) -> tuple[Array, Array]:
            return np.dot(a_columns[:, c], a_columns), np.dot(x, x[c])
    else:

        def inner(c: int) -> tuple[Array, Array]:
            return np.dot(a, a[c]), np.dot(x, x[c])

    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = int(np.argmax(g_sq))
    nearest = np.full(n, np.inf)
    available = np.ones(n, dtype=bool)
    d2, product = np.empty(n), np.empty(n)
    for step in range(k):
        if step:
            chosen[step] = _draw(nearest, available, rng)
        c = chosen[step]
        available[c] = False
        # d2 = g_sq + g_sq[c] - 2 <a, a_c> <x, x_c>, in preallocated buffers (the same operations, the same bits)
        np.add(g_sq, g_sq[c], out=d2)
        np.multiply(*inner(c), out=product)
        product *= 2.0
        d2 -= product
        np.maximum(d2, 0.0, out=d2)
        np.minimum(nearest, d2, out=nearest)
        # Chosen points get weight 0 exactly, whatever rounding left in d2.
        nearest[c] = 0.0
    return chosen


def gradient_factors(probs: Array, embeddings: Array) -> tuple[Array, Array]:
    """The two factors (a, x) of g_i = a_i outer x_i: a = p - onehot(argmax p), x the embedding rows."""
    p, x = probs_and_embeddings(probs, embeddings)
    a = p.copy()
    a[np.arange(len(p)), p.argmax(axis=1)] -= 1.0
    return a, x


def _draw(weights: Array, available: Array, rng: np.random.Generator) -> int:
    """One position drawn in proportion to ``weights``; uniformly from ``available`` when all are 0.

    The draw is ``rng.choice(n, p=weights / total)`` without its checks of p (four passes over the pool per
    pick): the same cumulative sum, the same uniform number, the same position.
    """
    total = weights.sum()
    if total > 0:
        cdf = (weights / total).cumsum()
        cdf /= cdf[-1]
        return int(cdf.searchsorted(rng.random(), side="right"))
    return int(rng.choice(np.flatnonzero(available)))

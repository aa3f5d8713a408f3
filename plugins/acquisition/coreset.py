"""Core-set selection by k-center greedy (Sener & Savarese 2018), a batch strategy over ``embeddings``.

Each step labels the candidate farthest from everything labelled or already chosen, which keeps the covering
radius max_i min_c ||x_i - x_c|| within a factor 2 of the best possible one. Memory is O(n + chunk x m): one
vector of distances to the nearest centre, refreshed with one matrix-vector product per new centre.
"""

from __future__ import annotations

import numpy as np

# Rows of the pool per block when distances to many centres at once are needed (labelled set, radius).
CHUNK_ROWS = 4096


def k_center_greedy(embeddings: np.ndarray, labeled_embeddings: np.ndarray, budget: int) -> np.ndarray:
    """Positions of ``min(budget, n)`` candidates chosen by k-center greedy, in the order they were chosen.

    With no labelled items the first centre is the candidate nearest the mean of the pool (deterministic).
    Ties go to the lower position.
    """
    x, centre = _centred(embeddings)
    n = len(x)
    k = min(int(budget), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    labeled = _as_rows(labeled_embeddings, x.shape[1]) - centre
    sq_norms = np.einsum("ij,ij->i", x, x)

    chosen = np.empty(k, dtype=np.int64)
    if len(labeled):
        nearest = _min_sq_dist(x, sq_norms, labeled)
        first = 0
    else:
        # After centring, the point nearest the mean is the one of smallest norm.
        chosen[0] = int(np.argmin(sq_norms))
        nearest = np.full(n, np.inf, dtype=x.dtype)
        _update(nearest, x, sq_norms, chosen[0])
        first = 1
    for step in range(first, k):
        pick = int(np.argmax(nearest))
        chosen[step] = pick
        _update(nearest, x, sq_norms, pick)
    return chosen


def covering_radius(embeddings: np.ndarray, centre_embeddings: np.ndarray) -> float:
    """max over ``embeddings`` of the Euclidean distance to the nearest row of ``centre_embeddings``."""
    x = np.asarray(embeddings, dtype=np.float64)
    centres = _as_rows(centre_embeddings, x.shape[1]).astype(np.float64)
    if len(x) == 0:
        return 0.0
    if len(centres) == 0:
        return float("inf")
    sq = _min_sq_dist(x, np.einsum("ij,ij->i", x, x), centres)
    return float(np.sqrt(sq.max()))


def _centred(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 rows minus their mean.

    float32 halves the memory read per step; centring keeps ||a||^2 - 2ab + ||b||^2 from cancelling badly.
    """
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, d), got shape {x.shape}")
    x = x.astype(np.float32)
    centre = x.mean(axis=0) if len(x) else np.zeros(x.shape[1], dtype=np.float32)
    return x - centre, centre


def _as_rows(values: np.ndarray | None, d: int) -> np.ndarray:
    if values is None:
        return np.zeros((0, d), dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    if values.size == 0:
        return np.zeros((0, d), dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != d:
        raise ValueError(f"labelled embeddings must have shape (m, {d}), got {values.shape}")
    return values


def _min_sq_dist(x: np.ndarray, sq_norms: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared distance from each row of ``x`` to its nearest centre, in blocks (no n x m matrix)."""
    out = np.empty(len(x), dtype=x.dtype)
    centre_sq = np.einsum("ij,ij->i", centres, centres)
    for start in range(0, len(x), CHUNK_ROWS):
        block = slice(start, start + CHUNK_ROWS)
        for c_start in range(0, len(centres), CHUNK_ROWS):
            c_block = slice(c_start, c_start + CHUNK_ROWS)
            d2 = sq_norms[block, None] - 2.0 * (x[block] @ centres[c_block].T) + centre_sq[None, c_block]
            part = d2.min(axis=1)
            out[block] = part if c_start == 0 else np.minimum(out[block], part)
    return np.maximum(out, 0.0)


def _update(nearest: np.ndarray, x: np.ndarray, sq_norms: np.ndarray, pick: int) -> None:
    """Fold the distances to the new centre ``pick`` into ``nearest`` in place."""
    d2 = x @ x[pick]
    d2 *= -2.0
    d2 += sq_norms
    d2 += sq_norms[pick]
    np.minimum(nearest, d2, out=nearest)
    # A chosen point must never be chosen again, even when the remaining ones are exact duplicates (all 0).
    nearest[pick] = -np.inf

"""Core-set selection by k-center greedy (Sener & Savarese 2018), a batch strategy over ``embeddings``.

Each step labels the candidate farthest from everything labelled or already chosen, which keeps the covering
radius max_i min_c ||x_i - x_c|| within a factor 2 of the best possible one.

The textbook loop refreshes every candidate's distance-to-nearest-centre after each pick: one pass over the
whole (n, d) array per pick, bound by memory bandwidth. Here the refresh is lazy and still exact. Distances
only ever shrink as centres are added, so a distance last brought up to date a few centres ago is an upper
bound on the true one. Each step takes the candidate with the largest bound from a heap; if that bound is
already up to date it is the true farthest point, otherwise it is refreshed against the centres added since
(a few d-vectors), pushed back, and the step looks again. If one step needs more than ``LAZY_REFRESH_LIMIT``
refreshes, every bound is refreshed at once with one blocked matrix product against the new centres.
Memory stays O(n + k d + block): no n x k matrix. Measured on 100,000 x 128, budget 1,000: about 0.7 s on
unstructured Gaussian data (few candidates ever reach the top) and about 5 s on 50 tight clusters (many
do), against about 6-10 s for the eager loop on this two-core machine.
"""

from __future__ import annotations

import heapq

import numpy as np

from plugins.acquisition.inputs import embedding_rows
from plugins.arrays import Array

# Rows of the pool per block when distances to many centres at once are needed.
CHUNK_ROWS = 4096
# Single-row refreshes one step may spend before refreshing every bound at once (one pass over the pool
# plus rebuilding the heap, worth some thousands of single-row refreshes) is cheaper.
LAZY_REFRESH_LIMIT = 2048


def k_center_greedy(embeddings: Array, labeled_embeddings: Array, budget: int) -> Array:
    """Positions of ``min(budget, n)`` candidates chosen by k-center greedy, in the order they were chosen.

    With no labelled items the first centre is the candidate nearest the mean of the pool (deterministic).
    Ties go to the lower position.
    """
    x = embedding_rows(embeddings, keep_float32=True)
    n, d = x.shape
    k = min(int(budget), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    labeled = _labeled_rows(labeled_embeddings, d)
    m = len(labeled)
    mean = x.mean(axis=0, dtype=np.float64)

    centres = np.empty((m + k, d))
    centres[:m] = labeled
    chosen = np.empty(k, dtype=np.int64)
    first = 0
    if m == 0:
        chosen[0] = _nearest_to(x, mean)
        centres[0] = x[chosen[0]]
        first = 1
    count = m + first  # centres so far
    bound = np.full(n, np.inf)  # squared distance to the nearest centre, exact up to centre last[i]
    _refresh_all(bound, x, mean, centres[:count])
    available = np.ones(n, dtype=bool)
    available[chosen[:first]] = False
    last = np.full(n, count, dtype=np.int64)
    synced = count  # every bound is exact with respect to centres[:synced]
    heap = _heap(bound, available)

    for step in range(first, k):
        refreshes = 0
        while True:
            negative, top = heap[0]
            if last[top] == count:
                break
            if refreshes == LAZY_REFRESH_LIMIT:
                _refresh_all(bound, x, mean, centres[synced:count])
                last[:] = synced = count
                heap = _heap(bound, available)
                continue
            diff = centres[last[top] : count] - x[top]
            bound[top] = min(-negative, float(np.einsum("ij,ij->i", diff, diff).min()))
            last[top] = count
            heapq.heapreplace(heap, (-bound[top], top))
            refreshes += 1
        heapq.heappop(heap)
        chosen[step] = top
        available[top] = False
        centres[count] = x[top]
        count += 1
    return chosen


def covering_radius(embeddings: Array, centre_embeddings: Array) -> float:
    """max over ``embeddings`` of the Euclidean distance to the nearest row of ``centre_embeddings``."""
    x = embedding_rows(embeddings, keep_float32=True)
    centres = _labeled_rows(centre_embeddings, x.shape[1])
    if len(x) == 0:
        return 0.0
    if len(centres) == 0:
        return float("inf")
    nearest = np.full(len(x), np.inf)
    _refresh_all(nearest, x, x.mean(axis=0, dtype=np.float64), centres)
    return float(np.sqrt(nearest.max()))


def _labeled_rows(values: Array | None, d: int) -> Array:
    if values is None:
        return np.zeros((0, d))
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros((0, d))
    if values.ndim != 2 or values.shape[1] != d:
        raise ValueError(f"labelled embeddings must have shape (m, {d}), got {values.shape}")
    return values


def _heap(bound: Array, available: Array) -> list[tuple[float, int]]:
    """A max-heap (negated bounds) of the available positions; ties pop the lower position first."""
    positions = np.flatnonzero(available)
    heap = list(zip((-bound[positions]).tolist(), positions.tolist(), strict=True))
    heapq.heapify(heap)
    return heap


def _nearest_to(x: Array, point: Array) -> int:
    best, best_d2 = 0, np.inf
    for start in range(0, len(x), CHUNK_ROWS):
        diff = x[start : start + CHUNK_ROWS] - point
        d2 = np.einsum("ij,ij->i", diff, diff)
        i = int(np.argmin(d2))
        if d2[i] < best_d2:
            best, best_d2 = start + i, d2[i]
    return best


def _refresh_all(bound: Array, x: Array, mean: Array, centres: Array) -> None:
    """bound = min(bound, squared distance to the nearest of ``centres``), in row blocks.

    Rows and centres are shifted by the pool mean first, so ||a||^2 - 2ab + ||b||^2 does not cancel badly
    when the embeddings sit far from the origin.
    """
    if len(centres) == 0:
        return
    c = centres - mean
    c_sq = np.einsum("ij,ij->i", c, c)
    for start in range(0, len(x), CHUNK_ROWS):
        block = x[start : start + CHUNK_ROWS] - mean
        d2 = np.einsum("ij,ij->i", block, block)[:, None] - 2.0 * (block @ c.T) + c_sq[None, :]
        part = bound[start : start + CHUNK_ROWS]
        np.minimum(part, np.maximum(d2.min(axis=1), 0.0), out=part)

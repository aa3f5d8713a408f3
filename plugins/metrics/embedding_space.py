"""Shared geometry of embedding space: row normalisation and exact nearest-neighbour distances."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from plugins.arrays import Array
from plugins.neighbours import NeighbourSearch, search_for


def l2_normalise(embeddings: Array) -> tuple[Array, Array]:
    """``(unit, finite)``: each row divided by its Euclidean norm, in float64.

    Rows with a non-finite entry are marked ``finite`` False and set to zero (callers leave them out);
    all-zero rows have no direction and stay the zero vector, at distance 1 from every unit vector.
    """
    x = np.array(embeddings, dtype=np.float64, copy=True)
    if x.ndim != 2:
        raise ValueError(f"embeddings must have shape (n, d), got {x.shape}")
    finite = np.all(np.isfinite(x), axis=1)
    x[~finite] = 0.0
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x, finite


def distinct_rows(
    rows: Array, return_inverse: bool = False
) -> Array | tuple[Array, Array]:
    """Position of the first occurrence of every distinct row, in order of first occurrence.

    With ``return_inverse`` also, for every row, the index into that result of the row it copies.
    Rows are compared by a 128-bit digest of their bytes (after turning -0.0 into 0.0 so equal numbers compare
    equal), computed block by block: memory stays at a block plus 16 bytes a row, where sorting the rows
    themselves needs several copies of them (a million 50-float64 rows: 16 MB against 1.6 GB).
    """
    digests = row_digests(rows)
    _, first, inverse = np.unique(digests, return_index=True, return_inverse=True)
    # np.unique orders by digest; reorder by first occurrence so "first" means the lowest position.
    order = np.argsort(first)
    if not return_inverse:
        return first[order]
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.reshape(-1)]


def row_digests(rows: Any, block: int = 1 << 14) -> Array:
    """A 16-byte digest of each row's bytes (an (n, ...) array or anything sliced like one), as ``S16``."""
    out = np.empty(len(rows), dtype="S16")
    for start in range(0, len(rows), block):
        part = np.asarray(rows[start : start + block])
        if np.issubdtype(part.dtype, np.floating):
            part = part + part.dtype.type(0)  # -0.0 + 0.0 == +0.0
        part = np.ascontiguousarray(part).reshape(len(part), -1)
        out[start : start + len(part)] = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in part]
    return out


def nearest(
    query: Array, reference: Array, exclude_self: bool = False, neighbours: NeighbourSearch | None = None
) -> tuple[Array, Array]:
    """``(distance, index)`` of each query row's nearest reference row (Euclidean).

    The neighbour comes from the shared index over ``reference`` (``plugins.neighbours``; exact unless the
    run's settings make a large set approximate). Exact search finds it through |a|^2 + |b|^2 - 2ab, which
    loses digits for nearly identical rows; the returned distance is recomputed directly from the difference,
    so thresholds such as 0.03 are compared against an exact figure. With ``exclude_self`` the query is the
    reference and a row is never its own neighbour. A query with no neighbour found gets index -1 and
    distance NaN.
    """
    index = search_for(neighbours).over(reference)
    found, _ = index.search(1, None if exclude_self else query)
    found = found[:, 0]
    distance = np.full(len(query), np.nan)
    ok = found >= 0
    for start in range(0, len(query), 1 << 16):
        part = slice(start, start + (1 << 16))
        rows = np.flatnonzero(ok[part]) + start
        distance[rows] = np.linalg.norm(query[rows] - reference[found[rows]], axis=1)
    return distance, found

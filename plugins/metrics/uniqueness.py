"""Uniqueness in embedding space, as Encord Active defines it, on L2-normalised embeddings.

Normalisation: every embedding row is divided by its Euclidean norm, so distances lie in [0, 2] and depend
only on direction (for unit vectors, distance = sqrt(2 - 2 cos)). One threshold then means the same for any
embedder (pixel PCA, a model's penultimate layer, CLIP) whatever its scale. A zero row stays zero; a row with
a non-finite entry cannot be placed and scores NaN (and is nobody's neighbour).

Exact duplicates are rows whose normalised embeddings are identical. Of each such group, every copy but the
first (lowest position) scores 0; the first scores its distance to the nearest row outside the group, so a
data set of pairs of duplicates does not hide how far apart the pairs are.
"""

from __future__ import annotations

import numpy as np

from plugins.arrays import Array
from plugins.metrics.embedding_space import distinct_rows, l2_normalise, nearest
from plugins.neighbours import NeighbourSearch


def uniqueness(embeddings: Array, neighbours: NeighbourSearch | None = None) -> Array:
    """Distance from each item to its nearest neighbour on L2-normalised embeddings, with exact duplicates 0.

    Returns (n,) float in [0, 2]; NaN for rows with non-finite entries and for an item with no other distinct
    row to measure against (a lone item, or the first copy when all rows are identical). ``neighbours``: the
    run's shared neighbour search (exact search when not given).
    """
    unit, finite = l2_normalise(embeddings)
    out = np.full(len(unit), np.nan)
    valid = np.flatnonzero(finite)
    if len(valid) == 0:
        return out
    # One representative per distinct row, the first occurrence: the lowest position.
    first = distinct_rows(unit[valid] if len(valid) < len(unit) else unit)
    # Every row finite and distinct (the usual case): the rows themselves, not a copy of them.
    distinct = unit if len(first) == len(unit) else unit[valid[first]]
    out[valid] = 0.0
    if len(distinct) >= 2:
        distance, _ = nearest(distinct, distinct, exclude_self=True, neighbours=neighbours)
        out[valid[first]] = distance
    else:
        out[valid[first]] = np.nan
    return out


def near_duplicate(embeddings: Array, threshold: float, neighbours: NeighbourSearch | None = None) -> Array:
    """Boolean (n,): ``uniqueness(embeddings) <= threshold``; NaN uniqueness is never flagged.

    So every copy of an exact duplicate but the first is flagged, and the first only when it also has a near
    neighbour outside its group; two distinct rows within the threshold of each other are both flagged.
    With the run's shared ``neighbours`` the search uniqueness made is reused, not repeated.
    """
    values = uniqueness(embeddings, neighbours)
    with np.errstate(invalid="ignore"):
        return values <= float(threshold)

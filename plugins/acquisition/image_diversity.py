"""Image Diversity, as Encord Active defines it: a rank that interleaves k-means clusters, prototypes first.

1. k = ``n_classes`` (10 when unknown) k-means clusters of the embeddings.
2. Inside each cluster, items sorted by L2 distance to the centroid, nearest first (ties: lower position).
3. Round-robin merge: the 1st item of every cluster, then the 2nd of every cluster, and so on. Within one pass
   the clusters come in a fixed order: larger cluster first, ties by lower k-means label. A cluster that has
   run out is skipped.
An item's diversity value is its position in the merged order (0 = first). Low = close to a class prototype,
easy and representative: labelled first when there are no labels yet. With fewer items than k it is skipped.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from plugins.acquisition.inputs import embedding_rows
from plugins.arrays import Array

DEFAULT_CLUSTERS = 10


def positions(embeddings: Array, n_classes: int, rng: np.random.Generator) -> Array:
    """Each item's 0-based position in the round-robin merge; all zeros with fewer items than k."""
    x = embedding_rows(embeddings)
    k = int(n_classes) if n_classes and n_classes > 0 else DEFAULT_CLUSTERS
    n = len(x)
    if n < k:
        return np.zeros(n, dtype=np.int64)
    model = KMeans(n_clusters=k, n_init=3, random_state=int(rng.integers(2**31 - 1))).fit(x)
    labels = model.labels_.astype(np.int64)
    # Row by row the same norms as one expression, in blocks so the temporaries stay small at a million rows.
    distances = np.empty(n)
    for start in range(0, n, 1 << 16):
        part = slice(start, start + (1 << 16))
        distances[part] = np.linalg.norm(x[part] - model.cluster_centers_[labels[part]], axis=1)
    return merged_positions(labels, distances)


def image_diversity(embeddings: Array, n_classes: int, rng: np.random.Generator) -> Array:
    """Acquisition score: -position, so the item first in the merged order scores highest."""
    return -positions(embeddings, n_classes, rng).astype(np.float64)


def merged_positions(labels: Array, distances: Array) -> Array:
    """Round-robin positions from cluster labels and distances to the own centroid (see the module doc)."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    sizes = np.bincount(labels)
    # Rank of each cluster within a pass: size descending, then label ascending.
    cluster_rank = np.empty(len(sizes), dtype=np.int64)
    cluster_rank[np.lexsort((np.arange(len(sizes)), -sizes))] = np.arange(len(sizes))
    # Rank of each item within its cluster: distance ascending, then position ascending.
    by_cluster = np.lexsort((np.arange(n), distances, labels))
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    within = np.empty(n, dtype=np.int64)
    within[by_cluster] = np.arange(n) - starts[labels[by_cluster]]
    merged = np.lexsort((cluster_rank[labels], within))
    out = np.empty(n, dtype=np.int64)
    out[merged] = np.arange(n)
    return out

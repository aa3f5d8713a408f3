"""Cluster-Margin (Citovsky et al. 2021): low margin, spread over hierarchical clusters. A batch strategy.

1. Cluster the candidates' embeddings by agglomerative clustering with average linkage. The linkage needs all
   pairwise distances, so above ``HAC_MAX_ITEMS`` candidates it runs on a seeded subsample and every other
   candidate joins the cluster of its nearest subsample point.
2. Keep the ``ceil(margin_multiplier * budget)`` candidates with the smallest margin top1(p) - top2(p).
3. Group the kept candidates by cluster and visit the groups round-robin, smallest group first (ties: lower
   cluster label), taking one uniformly random member of each group per pass, until the budget is filled.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.cluster import AgglomerativeClustering

from plugins.acquisition.inputs import probs_and_embeddings
from plugins.acquisition.uncertainty import margin
from plugins.arrays import Array
from plugins.neighbours import NeighbourSearch
from plugins.selection.policies import topk

# Average linkage keeps an O(n^2) distance matrix: 5,000 items is about 100 MB.
HAC_MAX_ITEMS = 5000


def cluster_margin(
    probs: Array,
    embeddings: Array,
    budget: int,
    rng: np.random.Generator,
    margin_multiplier: float = 10.0,
    n_clusters: int | None = None,
) -> Array:
    """Positions of ``min(budget, n)`` candidates, round-robin over the clusters of low-margin candidates.

    ``n_clusters`` defaults to the budget (at most the number of clustered items): with that many clusters
    a full round-robin pass can give one item per cluster.
    """
    p, x = probs_and_embeddings(probs, embeddings)
    n = len(x)
    k = min(int(budget), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)

    labels = hac_labels(x, n_clusters if n_clusters is not None else k, rng)
    kept = topk(margin(p), min(n, max(k, math.ceil(margin_multiplier * k))))
    return round_robin(kept, labels[kept], k, rng)


def hac_labels(x: Array, n_clusters: int, rng: np.random.Generator) -> Array:
    """Average-linkage cluster label per row; on a subsample plus nearest-neighbour assignment when large."""
    n = len(x)
    fit = np.sort(rng.choice(n, size=HAC_MAX_ITEMS, replace=False)) if n > HAC_MAX_ITEMS else np.arange(n)
    clusters = max(1, min(int(n_clusters), len(fit)))
    if clusters == 1:
        return np.zeros(n, dtype=np.int64)
    fitted = np.asarray(AgglomerativeClustering(n_clusters=clusters, linkage="average").fit_predict(x[fit]))
    if len(fit) == n:
        return fitted.astype(np.int64)
    nearest, _ = NeighbourSearch().over(x[fit], share=False).search(1, x)
    nearest = nearest[:, 0]
    return fitted[nearest].astype(np.int64)


def round_robin(items: Array, groups: Array, k: int, rng: np.random.Generator) -> Array:
    """``k`` of ``items``: one random member per group per pass, smallest group first (then lower label)."""
    order = rng.permutation(len(items))  # a random order inside each group
    items, groups = items[order], groups[order]
    names, sizes = np.unique(groups, return_counts=True)
    group_rank = np.empty(len(names), dtype=np.int64)
    group_rank[np.lexsort((names, sizes))] = np.arange(len(names))
    rank_of_item = group_rank[np.searchsorted(names, groups)]
    # Position of each item inside its group, in the random order: the pass in which it is taken.
    by_group = np.argsort(rank_of_item, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(rank_of_item))[:-1]]
    turn = np.empty(len(items), dtype=np.int64)
    turn[by_group] = np.arange(len(items)) - starts[rank_of_item[by_group]]
    picked = np.lexsort((rank_of_item, turn))[:k]
    return np.asarray(items[picked], dtype=np.int64)

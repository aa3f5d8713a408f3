"""Diverse margin (Zhdanov 2019, "Diverse mini-batch Active Learning"): the most uncertain items, spread out.

1. Keep the ``prefilter * budget`` candidates with the smallest margin top1(p) - top2(p).
2. Weighted k-means on their embeddings into ``budget`` clusters, each item weighted by its informativeness
   1 - (top1 - top2), so the centres lean towards the most uncertain regions.
3. From each cluster take the kept candidate nearest its centre.

Top-k margin spends a batch on near-copies from one confused region; the clusters make the batch cover every
confused region instead, and the nearest-to-centre pick avoids the outliers that k-center picks.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from plugins.acquisition.inputs import probs_and_embeddings
from plugins.acquisition.uncertainty import margin
from plugins.arrays import Array
from plugins.selection.policies import topk


def diverse_margin(
    probs: Array, embeddings: Array, budget: int, rng: np.random.Generator, prefilter: float = 10.0
) -> Array:
    """Positions of ``min(budget, n)`` candidates, one per cluster of the low-margin candidates.

    Best first: the picks are ordered by their informativeness (ties to the lower position).
    """
    p, x = probs_and_embeddings(probs, embeddings)
    if prefilter < 1:
        raise ValueError(f"prefilter must be at least 1 (a multiple of the budget), got {prefilter}")
    n = len(x)
    k = min(int(budget), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    informativeness = 1.0 + margin(p)  # 1 - (top1 - top2), in [0, 1]
    kept = topk(informativeness, min(n, max(k, int(np.ceil(prefilter * k)))))
    if len(kept) == k:
        return kept
    chosen = nearest_to_centres(x[kept], informativeness[kept], k, rng)
    picks = kept[chosen]
    return np.asarray(picks[np.lexsort((picks, -informativeness[picks]))], dtype=np.int64)


def nearest_to_centres(x: Array, weights: Array, k: int, rng: np.random.Generator) -> Array:
    """``k`` distinct rows of ``x``: for each of k weighted k-means centres in turn, the nearest row not taken.

    A small floor on the weights keeps every row in the fit (k-means ignores rows of weight 0).
    """
    model = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31 - 1)))
    model.fit(x, sample_weight=np.maximum(weights, 1e-3))
    distances = model.transform(x)  # (rows, k)
    taken = np.zeros(len(x), dtype=bool)
    chosen = np.empty(k, dtype=np.int64)
    for centre in range(k):
        order = np.argsort(distances[:, centre], kind="stable")
        pick = order[~taken[order]][0]
        chosen[centre] = pick
        taken[pick] = True
    return chosen

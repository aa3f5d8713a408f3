"""TypiClust (Hacohen et al. 2022): typical points of uncovered clusters, for low budgets and cold starts.

k-means splits labelled plus candidate embeddings into m + budget clusters (m labelled). Each pick goes to the
cluster holding the fewest labelled-or-already-picked points, the largest such cluster first (ties: lower
cluster label), and takes its most typical unpicked candidate, where

    typicality(x) = 1 / mean distance from x to its K nearest neighbours in the cluster, K = min(k, size - 1).

So the first picks cover the largest clusters that hold no labelled point; once every cluster holds one, the
next picks go round again. Works with m = 0.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from plugins.acquisition.inputs import pool_and_labeled
from plugins.arrays import Array
from plugins.neighbours import NeighbourSearch, faiss_module

# Above this many clusters full k-means gets slow; the paper's runs switch to mini-batch k-means there. Here
# faiss's k-means takes over instead (float32, KMEANS_ITERATIONS Lloyd steps from a seeded start, fitted on a
# seeded sample of KMEANS_POINTS_PER_CLUSTER points per cluster, then every point assigned to its nearest
# centre): at 100,000 candidates and 1,020 clusters it takes seconds where mini-batch k-means took half a minute.
FULL_KMEANS_MAX_CLUSTERS = 50
KMEANS_ITERATIONS = 10
KMEANS_POINTS_PER_CLUSTER = 40


def typiclust(
    embeddings: Array,
    labeled_embeddings: Array,
    budget: int,
    rng: np.random.Generator,
    k_neighbors: int = 20,
) -> Array:
    """Positions of ``min(budget, n)`` candidates, one typical point per uncovered cluster, largest first."""
    x, labeled, k = pool_and_labeled(embeddings, labeled_embeddings, budget)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    n, d = x.shape
    m = len(labeled)

    everything = np.concatenate([x, labeled]) if m else x
    labels = kmeans_labels(everything, min(m + k, n + m), rng)
    candidate_labels, labeled_labels = labels[:n], labels[n:]
    n_clusters = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=n_clusters)
    covered = np.bincount(labeled_labels, minlength=n_clusters)
    left = np.bincount(candidate_labels, minlength=n_clusters)  # candidates not yet picked, per cluster

    typicality: dict[int, Array] = {}
    taken = np.zeros(n, dtype=bool)
    chosen = np.empty(k, dtype=np.int64)
    for step in range(k):
        # Fewest covered points first, then the largest cluster, then the lower label; only clusters with a
        # candidate left qualify.
        order = np.lexsort((np.arange(n_clusters), -sizes, covered))
        cluster = int(next(c for c in order if left[c] > 0))
        members = np.flatnonzero(candidate_labels == cluster)
        if cluster not in typicality:
            typicality[cluster] = typicality_scores(everything[labels == cluster], k_neighbors)[: len(members)]
        scores = np.where(taken[members], -np.inf, typicality[cluster])
        pick = int(members[np.argmax(scores)])
        chosen[step] = pick
        taken[pick] = True
        covered[cluster] += 1
        left[cluster] -= 1
    return chosen


def kmeans_labels(x: Array, n_clusters: int, rng: np.random.Generator) -> Array:
    """Seeded k-means labels (faiss's k-means above ``FULL_KMEANS_MAX_CLUSTERS`` clusters)."""
    seed = int(rng.integers(2**31 - 1))
    n_clusters = max(1, min(int(n_clusters), len(x)))
    if n_clusters <= FULL_KMEANS_MAX_CLUSTERS:
        labels = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit_predict(x)
    else:
        points = np.ascontiguousarray(x, dtype=np.float32)
        model = faiss_module().Kmeans(points.shape[1], n_clusters, niter=KMEANS_ITERATIONS, seed=seed,
                                      max_points_per_centroid=KMEANS_POINTS_PER_CLUSTER)
        model.train(points)
        labels = model.index.search(points, 1)[1][:, 0]
    # Relabel to 0..K'-1 so that empty clusters (possible with mini-batch) leave no gaps.
    return np.asarray(np.unique(labels, return_inverse=True)[1], dtype=np.int64)


def typicality_scores(points: Array, k_neighbors: int = 20) -> Array:
    """1 / mean distance to the ``min(k_neighbors, len - 1)`` nearest other points (1 for a lone point), per row
    of ``points`` in row order (typiclust slices the candidates off the front)."""
    if len(points) < 2:
        return np.ones(len(points))
    k = min(int(k_neighbors), len(points) - 1)
    # One cluster's points: a set of its own, searched exactly. Column 0 is the point itself (distance 0);
    # duplicates can make the mean 0, hence the floor.
    _, distances = NeighbourSearch().over(points, share=False).search(k + 1, points)
    return np.asarray(1.0 / np.maximum(distances[:, 1:].mean(axis=1), 1e-12))

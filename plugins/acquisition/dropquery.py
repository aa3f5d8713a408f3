"""DropQuery (Gupte, Aklilu, Nirschl and Yeung-Levy, "Revisiting Active Learning in the Era of Vision Foundation
Models", TMLR 2024): the candidates whose class dropout on the model's input changes, one per k-means cluster.

Let x be a candidate's features (what the model is given for it) and y*(x) the model's class for it. Each of M
dropout passes draws a mask m_j with m_ji ~ Bernoulli(1 - p) per feature and asks the model for the class of
m_j * x / (1 - p) (inverted dropout, as torch's ``nn.Dropout`` scales). A candidate's flip count is

    f(x) = #{ j = 1..M : argmax_c p_c(m_j * x / (1 - p)) != y*(x) },

and it is uncertain when f(x) > t. The threshold t starts at floor(M / 2), so most passes must change the class,
and is lowered one step at a time, while t > 0, until at least ``candidates_per_pick`` x budget candidates are
uncertain. With k = min(budget, n):

- k or more uncertain candidates: k-means splits their L2-normalised features into k clusters, and each cluster
  gives the member closest to its centre (the mean of its members), the largest cluster first (ties: lower
  position). Should k-means find fewer than k distinct clusters (duplicate rows), the second closest of each
  cluster come next, in the same order, and so on.
- fewer: all of them, most flips first (ties: lower position), then a uniform draw without replacement from the
  other candidates fills the batch.

Where each choice was checked: the paper sets M = 3 dropout passes over the foundation-model features and clusters
the uncertain candidates for diversity; the authors' code (github.com/sanketx/AL-foundation-models at aa015d2,
``ALFM/src/query_strategies/dropout.py``, ``ALFM/conf/query_strategy/dropout.yaml``, ``ALFM/conf/al_train.yaml``,
``ALFM/src/clustering/kmeans.py``, ``ALFM/src/classifiers/base_classifier.py``) gives the rest: one dropout ratio,
p = 0.75, applied to the classifier's input features; the majority threshold M // 2 lowered while fewer than
25 x budget candidates pass it (``candidates_per_pick: 0`` keeps the plain majority rule); all candidates plus a
uniform random fill when they are fewer than the budget; budget clusters of the L2-normalised candidates and the
point closest to each centroid otherwise.

Where this differs, and why: the authors cluster the classifier's own batch-normalised input (standardised by
statistics of its training batches) with faiss k-means (100 iterations from a k-means++ start, trained on at most
512 points per centroid); the model here is any model, so its features are only L2-normalised, and the k-means is
TypiClust's (:func:`plugins.acquisition.typiclust.kmeans_labels`: scikit-learn's on every candidate up to 50
clusters, faiss's above), seeded from ``rng``. Their batch is a set; this one is ordered (largest cluster first)
because a batch strategy returns positions best first. The candidates are perturbed ``chunk_size`` rows at a time,
so memory stays bounded on large pools.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse

from plugins.acquisition.typiclust import kmeans_labels
from plugins.arrays import Array

# The authors' settings (see the module docstring).
DROPOUT = 0.75
PASSES = 3
CANDIDATES_PER_PICK = 25
# Rows per block where a per-row computation would otherwise hold a second copy of the candidates.
BLOCK_ROWS = 8192


def dropquery(
    features: ArrayLike,
    probs: ArrayLike,
    predict_proba: Callable[[Array], Array],
    budget: int,
    rng: np.random.Generator,
    dropout: float = DROPOUT,
    passes: int = PASSES,
    candidates_per_pick: int = CANDIDATES_PER_PICK,
    chunk_size: int = 4096,
) -> Array:
    """Positions of ``min(budget, n)`` candidates, best first: one per k-means cluster of the candidates whose
    class most dropout passes change, else all of those and a random fill (see the module docstring)."""
    x = np.asarray(features, dtype=np.float32)
    p = np.asarray(probs, dtype=np.float64)
    if x.ndim != 2 or p.ndim != 2 or len(x) != len(p):
        raise ValueError(f"features (n, d) and probs (n, C) need the same n, got {x.shape} and {p.shape}")
    _check_settings(dropout, passes, candidates_per_pick, chunk_size)
    k = max(min(int(budget), len(x)), 0)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    flips = flip_counts(x, p.argmax(axis=1), predict_proba, rng, dropout, passes, chunk_size)
    uncertain = np.flatnonzero(flips > flip_threshold(flips, passes, candidates_per_pick * k))
    if len(uncertain) < k:
        return _all_then_random(uncertain, flips, k, rng)
    return uncertain[closest_to_centres(unit_rows(x[uncertain], in_place=True), k, rng)]


def flip_counts(
    features: Array,
    predicted: Array,
    predict_proba: Callable[[Array], Array],
    rng: np.random.Generator,
    dropout: float = DROPOUT,
    passes: int = PASSES,
    chunk_size: int = 4096,
) -> Array:
    """For each row of (n, d) float32 ``features``: in how many of ``passes`` dropout passes the class
    ``predict_proba`` gives differs from ``predicted`` (n,); (n,) int64 in 0..passes.

    Rows go ``chunk_size`` at a time, so only one chunk's masks and perturbed copies exist at once. The masks are
    drawn chunk by chunk, pass by pass, so the counts depend on ``chunk_size`` as well as on ``rng``.
    """
    n = len(features)
    flips = np.zeros(n, dtype=np.int64)
    keep = np.float32(1.0 - dropout)
    for start in range(0, n, chunk_size):
        rows = features[start:start + chunk_size]
        for _ in range(passes):
            kept = rng.random(rows.shape, dtype=np.float32) < keep
            answer = np.asarray(predict_proba(np.where(kept, rows / keep, np.float32(0.0))))
            if answer.ndim != 2 or len(answer) != len(rows):
                raise ValueError(f"predict_proba returned shape {answer.shape} for {len(rows)} rows, "
                                 f"expected ({len(rows)}, C)")
            flips[start:start + len(rows)] += answer.argmax(axis=1) != predicted[start:start + len(rows)]
    return flips


def flip_threshold(flips: Array, passes: int, wanted: int) -> int:
    """The flip count an uncertain candidate must exceed: ``passes // 2``, lowered one at a time (not below 0)
    while fewer than ``wanted`` of ``flips`` exceed it."""
    # at_least[t] = how many candidates flipped t times or more
    at_least = np.cumsum(np.bincount(flips, minlength=passes + 1)[::-1])[::-1]
    threshold = passes // 2
    while threshold > 0 and at_least[threshold + 1] < wanted:
        threshold -= 1
    return threshold


def closest_to_centres(x: Array, k: int, rng: np.random.Generator) -> Array:
    """Positions of ``min(k, n)`` rows of (n, d) ``x``: k-means into k clusters, then the member closest to each
    cluster's mean, the largest cluster first (ties: lower position); then the second closest of each, and so on,
    when k-means found fewer than k clusters."""
    n = len(x)
    labels = kmeans_labels(x, k, rng)
    sizes = np.bincount(labels)
    position = np.arange(n)
    centres = cluster_means(x, labels, len(sizes))
    distance = np.empty(n, dtype=np.float64)
    for start in range(0, n, BLOCK_ROWS):  # blocks: a full (n, d) offset array would double the memory held
        block = slice(start, start + BLOCK_ROWS)
        offset = x[block] - centres[labels[block]]
        distance[block] = np.einsum("ij,ij->i", offset, offset)
    by_cluster = np.lexsort((position, distance, labels))  # cluster by cluster, nearest first
    first_of_cluster = np.cumsum(sizes) - sizes
    rank = np.empty(n, dtype=np.int64)
    rank[by_cluster] = position - first_of_cluster[labels[by_cluster]]
    return np.lexsort((position, -sizes[labels], rank))[: min(k, n)]


def cluster_means(x: Array, labels: Array, n_clusters: int) -> Array:
    """The mean of the rows of (n, d) ``x`` in each of clusters 0..n_clusters-1 (each non-empty), (K, d) in
    ``x``'s dtype; summed in float64 a block of rows at a time, so no float64 copy of ``x`` is made."""
    sums = np.zeros((n_clusters, x.shape[1]), dtype=np.float64)
    for start in range(0, len(x), BLOCK_ROWS):
        block = labels[start:start + BLOCK_ROWS]
        one_hot = sparse.csr_matrix((np.ones(len(block)), (block, np.arange(len(block)))),
                                    shape=(n_clusters, len(block)))
        sums += one_hot @ x[start:start + BLOCK_ROWS].astype(np.float64)
    return np.asarray(sums / np.bincount(labels, minlength=n_clusters)[:, None], dtype=x.dtype)


def unit_rows(x: Array, in_place: bool = False) -> Array:
    """Each row of floating ``x`` divided by its Euclidean norm (a zero row stays zero); with ``in_place``, in
    ``x`` itself."""
    norms = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(x.dtype).tiny).astype(x.dtype)
    if in_place:
        x /= norms
        return x
    return np.asarray(x / norms)


def _all_then_random(uncertain: Array, flips: Array, k: int, rng: np.random.Generator) -> Array:
    """Every uncertain position, most flips first (ties: lower position), then a uniform draw without
    replacement from the others up to ``k``."""
    first = uncertain[np.lexsort((uncertain, -flips[uncertain]))]
    others = np.ones(len(flips), dtype=bool)
    others[uncertain] = False
    drawn = rng.choice(np.flatnonzero(others), size=k - len(first), replace=False)
    return np.concatenate([first, drawn]).astype(np.int64)


def _check_settings(dropout: float, passes: int, candidates_per_pick: int, chunk_size: int) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    if candidates_per_pick < 0:
        raise ValueError(f"candidates_per_pick must be >= 0, got {candidates_per_pick}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall 2022): greedy maximum coverage by delta-balls.

A batch strategy for cold starts.

Every candidate x owns the ball B(x, delta). Points inside a labelled point's ball start covered. Each pick is
the candidate whose ball covers the most still-uncovered candidates (ties: lower position); its ball's points
become covered. Once everything is covered, the remaining picks go to the candidates with the most points in
their ball (the densest), ties to the lower position.

delta, when not given, follows the paper's purity rule: k-means with ``n_classes`` clusters gives
pseudo-labels, and a ball is pure when it holds only points of its centre's cluster. A ball around x is pure
exactly when delta is below the distance from x to the nearest point of another cluster, so the largest delta
with at least a ``purity`` fraction of pure balls sits just below a quantile of those distances: no grid
search needed. The distances come from a seeded subsample of ``DELTA_SAMPLE`` points when there are more.

The balls come from the run's shared neighbour index over the candidates (``plugins.neighbours``). Where that
index is exact (small pools) a ball holds every candidate within delta, as the paper defines it. Where it is
approximate (large pools) a ball holds at most ``max_neighbours`` candidates, the nearest ones within delta:
the graph then has at most n * max_neighbours edges (about 260 MB both ways at 1,000,000 candidates and 32),
and a dense ball counts as covering its ``max_neighbours`` nearest points, not every point within delta.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from plugins.acquisition.inputs import pool_and_labeled
from plugins.arrays import Array
from plugins.neighbours import NeighbourSearch, search_for

DELTA_SAMPLE = 5000
# Refuse graphs past this many edges (4-byte index + 4-byte value each, plus build copies): about 1-2 GB.
MAX_EDGES = 100_000_000


def probcover(
    embeddings: Array,
    labeled_embeddings: Array,
    budget: int,
    n_classes: int,
    rng: np.random.Generator,
    delta: float | None = None,
    purity: float = 0.95,
    max_neighbours: int = 32,
    neighbours: NeighbourSearch | None = None,
) -> Array:
    """Positions of ``min(budget, n)`` candidates chosen by greedy delta-ball coverage, in the order chosen.

    ``rng`` only seeds the k-means and the subsample used to pick delta; with ``delta`` given the result is
    fully deterministic. ``max_neighbours`` bounds a ball where the neighbour index is approximate.
    """
    x, labeled, k = pool_and_labeled(embeddings, labeled_embeddings, budget)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    n, d = x.shape
    if delta is None:
        delta = purity_delta(np.concatenate([x, labeled]) if len(labeled) else x, n_classes, rng, purity)

    index = search_for(neighbours).over(x)
    try:
        graph = index.within(float(delta), max_neighbours=max_neighbours, max_entries=MAX_EDGES)
    except ValueError:
        raise ValueError(
            f"ProbCover's delta-ball graph passed {MAX_EDGES} edges; lower delta or score a pool subset"
        ) from None
    covered = np.zeros(n, dtype=bool)
    if len(labeled):
        covered[index.within(float(delta), labeled, max_neighbours=max_neighbours).indices] = True
    # Row i of the graph is i's ball; row j of its transpose lists the balls that hold j.
    holders = graph.T.tocsr()

    # gain[i] = uncovered points in i's ball.
    gain = np.asarray(graph @ (~covered).astype(np.int32)).ravel().astype(np.int64)
    degree = np.diff(graph.indptr)
    available = np.ones(n, dtype=bool)
    chosen = np.empty(k, dtype=np.int64)
    for step in range(k):
        score = np.where(available, gain, -1)
        pick = int(np.argmax(score))
        if score[pick] <= 0:
            pick = int(np.argmax(np.where(available, degree, -1)))
        chosen[step] = pick
        available[pick] = False
        ball = graph.indices[graph.indptr[pick] : graph.indptr[pick + 1]]
        newly = ball[~covered[ball]]
        if len(newly):
            covered[newly] = True
            gain -= np.asarray(holders[newly].sum(axis=0)).ravel().astype(np.int64)
    return chosen


def purity_delta(
    points: Array, n_classes: int, rng: np.random.Generator, purity: float = 0.95
) -> float:
    """The largest ball radius for which at least ``purity`` of the balls hold one k-means cluster only."""
    x = np.asarray(points, dtype=np.float64)
    if len(x) > DELTA_SAMPLE:
        x = x[np.sort(rng.choice(len(x), size=DELTA_SAMPLE, replace=False))]
    clusters = max(1, min(int(n_classes) if n_classes and n_classes > 0 else 10, len(x)))
    labels = KMeans(n_clusters=clusters, n_init=3, random_state=int(rng.integers(2**31 - 1))).fit_predict(x)
    if clusters == 1 or len(np.unique(labels)) == 1:
        # One cluster: every ball is pure; any radius covering the whole set does.
        return float(np.ptp(x, axis=0).max() * np.sqrt(x.shape[1])) or 1.0
    to_other = np.full(len(x), np.inf)
    exact = NeighbourSearch()
    for label in np.unique(labels):
        inside = labels == label
        _, distances = exact.over(x[~inside], share=False).search(1, x[inside])
        to_other[inside] = distances[:, 0]
    # Ball i is pure iff delta < to_other[i]. Just below the q-th smallest value, the n - q balls from it up
    # are pure, and q = floor((1 - purity) n) is the largest q that keeps n - q >= purity * n.
    q = min(int(np.floor((1.0 - purity) * len(x))), len(x) - 1)
    return float(max(np.nextafter(np.sort(to_other)[q], 0.0), 0.0))

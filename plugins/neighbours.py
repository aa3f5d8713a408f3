"""Nearest neighbours among the rows of one embedding set: one index per set, built once and shared.

Every metric, filter and strategy that needs neighbours (uniqueness, near-duplicates, TypiClust, ProbCover,
Cluster-Margin's assignment) asks a :class:`NeighbourSearch` for the index over its vectors. The search keeps
the indexes it built, keyed by the vectors' content, so two consumers of the same embedding set share one
index and its results (near-duplicates reuse uniqueness's neighbours; nothing is searched twice).

- Up to ``approximate_above`` rows (and always when that is None) the search is exact: scikit-learn's
  brute-force search in float64, the search every consumer made before, so small pools keep their results.
- Above it, faiss's inverted-file index (``IndexIVFFlat``, float32): the rows are split into ``cells``
  k-means cells (default 2 sqrt(n)), and each query is compared with the rows of the ``probes`` cells
  nearest it. What approximation can cost is a missed
  neighbour; consumers that compare distances with a threshold re-measure the pairs found in float64. The
  index measures its own recall against exact search on a seeded sample of queries when it is built
  (:attr:`NeighbourIndex.recall`).

Nothing here holds an n x n array: searches run in blocks of queries and radius results are sparse.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from plugins.arrays import Array

log = logging.getLogger("runner")

# Queries per block of an exact search: bounds the (block, n) distance temporaries scikit-learn builds.
QUERY_BLOCK = 4096
# Building an approximate index: k-means iterations and sampled rows per list for its coarse quantiser.
TRAIN_ITERATIONS = 10
TRAIN_ROWS_PER_CELL = 16
# Rows an approximate radius query looks at when the caller sets no bound of its own.
APPROXIMATE_RADIUS_NEIGHBOURS = 64


@dataclass(frozen=True)
class NeighbourSettings:
    """How a :class:`NeighbourSearch` searches; the runner's values come from ``compute.neighbours``."""

    approximate_above: int | None = None  # rows above which the index is approximate; None: always exact
    cells: int | None = None  # inverted lists; None: 2 sqrt(n)
    probes: int = 8  # lists visited per query
    recall_sample: int = 500  # queries checked against exact search when an approximate index is built
    seed: int = 0
    keep: int = 2  # indexes kept at once (least recently used dropped first)


class NeighbourIndex:
    """Euclidean neighbours among the rows of ``vectors`` (n, d)."""

    def __init__(self, vectors: Array, settings: NeighbourSettings) -> None:
        x = np.asarray(vectors)
        if x.ndim != 2:
            raise ValueError(f"vectors must have shape (n, d), got {x.shape}")
        self.vectors = x
        self.settings = settings
        self.n, self.d = x.shape
        limit = settings.approximate_above
        self.approximate = limit is not None and self.n > limit
        self.recall: float | None = None
        self._faiss: Any = None
        self._exact: Any = None
        self._memo: dict[tuple[Any, ...], object] = {}

    # --- building ---------------------------------------------------------------------------------------
    def _exact_search(self) -> Any:
        if self._exact is None:
            from sklearn.neighbors import NearestNeighbors

            self._exact = NearestNeighbors(algorithm="brute").fit(self.vectors)
        return self._exact

    def _ivf(self) -> Any:
        if self._faiss is None:
            faiss = faiss_module()

            cells = int(self.settings.cells or np.clip(round(2 * np.sqrt(self.n)), 1, self.n))
            quantizer = faiss.IndexFlatL2(self.d)
            index = faiss.IndexIVFFlat(quantizer, self.d, cells)
            # The lists only route queries: a coarse k-means (few points per list, few iterations) routes
            # nearly as well as a fine one, at a fraction of the time that dominates building the index.
            index.cp.seed = int(self.settings.seed)
            index.cp.niter = TRAIN_ITERATIONS
            index.cp.min_points_per_centroid = 1
            rng = np.random.default_rng(self.settings.seed)
            sample = np.sort(rng.choice(self.n, size=min(self.n, TRAIN_ROWS_PER_CELL * cells), replace=False))
            index.train(self._float32(sample))
            for start in range(0, self.n, 1 << 16):
                index.add(self._float32(slice(start, start + (1 << 16))))
            index.nprobe = int(min(self.settings.probes, cells))
            self._faiss = index
            self.recall = self._measure_recall()
            log.info(f"neighbour index: {self.n:,} x {self.d}, {cells} cells, {index.nprobe} probed, "
                     f"recall@1 {self.recall:.4f} on {min(self.settings.recall_sample, self.n)} sampled queries")
        return self._faiss

    def _float32(self, rows: slice | Array) -> Array:
        return np.ascontiguousarray(self.vectors[rows], dtype=np.float32)

    def _measure_recall(self) -> float:
        """Share of sampled rows whose exact nearest other row is the one the approximate index returns."""
        faiss = faiss_module()

        count = min(self.settings.recall_sample, self.n)
        if count == 0 or self.n < 2:
            return 1.0
        rng = np.random.default_rng(self.settings.seed + 1)
        sample = np.sort(rng.choice(self.n, size=count, replace=False))
        queries = self._float32(sample)
        found, _ = self._approximate_search(queries, 2, exclude=sample)
        exact = np.full(count, -1, dtype=np.int64)
        best = np.full(count, np.inf)
        for start in range(0, self.n, 1 << 16):
            block = self._float32(slice(start, start + (1 << 16)))
            distances, index = faiss.knn(queries, block, min(2, len(block)))
            index = index + start
            own = index == sample[:, None]
            distances = np.where(own, np.inf, distances)
            column = distances.argmin(axis=1)
            value = distances[np.arange(count), column]
            better = value < best
            best[better], exact[better] = value[better], index[np.arange(count), column][better]
        # A tie in distance is a hit whichever of the tied rows was returned.
        hit = (found[:, 0] == exact) | np.isclose(self._exact_distance(sample, found[:, 0]), np.sqrt(best),
                                                  rtol=1e-5, atol=1e-6)
        return float(hit.mean())

    # --- queries ----------------------------------------------------------------------------------------
    def search(self, k: int, queries: Array | None = None) -> tuple[Array, Array]:
        """``(indices, distances)`` of the ``k`` nearest rows, nearest first, shape (q, k).

        ``queries`` None: every indexed row, never its own neighbour. Missing neighbours (fewer rows than
        ``k``, or none found by an approximate search) are -1 with distance inf. Exact search returns
        scikit-learn's float64 distances, approximate search faiss's float32 ones.
        """
        key = ("search", k) if queries is None else None
        if key is not None and key in self._memo:
            return self._memo[key]  # type: ignore[return-value]
        k = int(k)
        if self.approximate:
            # Every row as a query: float32 copies of one block of rows at a time, not of the whole set.
            q = self.vectors if queries is None else queries
            exclude = np.arange(self.n) if queries is None else None
            found = self._approximate_search(q, k, exclude)
        else:
            found = self._exact_knn(k, queries)
        if key is not None:
            self._memo[key] = found
        return found

    def _exact_knn(self, k: int, queries: Array | None) -> tuple[Array, Array]:
        search = self._exact_search()
        available = self.n - (1 if queries is None else 0)
        take = min(k, available)
        q_count = self.n if queries is None else len(queries)
        index = np.full((q_count, k), -1, dtype=np.int64)
        distance = np.full((q_count, k), np.inf)
        if take <= 0:
            return index, distance
        if queries is None:
            d, i = search.kneighbors(n_neighbors=take)
        else:
            d, i = search.kneighbors(np.asarray(queries), n_neighbors=take)
        index[:, :take], distance[:, :take] = i, d
        return index, distance

    def _approximate_search(self, queries: Array, k: int,
                            exclude: Array | None) -> tuple[Array, Array]:
        ivf = self._ivf()
        extra = 0 if exclude is None else 1
        want = min(k + extra, self.n)
        index = np.full((len(queries), k), -1, dtype=np.int64)
        distance = np.full((len(queries), k), np.inf)
        for start in range(0, len(queries), 1 << 14):
            part = slice(start, start + (1 << 14))
            squared, found = ivf.search(np.ascontiguousarray(queries[part], np.float32), want)
            if exclude is not None:
                # A row's own entry goes to the back, so every row keeps k others when k + 1 were found.
                own = found == exclude[part, None]
                order = np.argsort(own, axis=1, kind="stable")
                found = np.take_along_axis(np.where(own, -1, found), order, axis=1)
                squared = np.take_along_axis(squared, order, axis=1)
            found, squared = found[:, :k], squared[:, :k]
            index[part, : found.shape[1]] = found
            distance[part, : found.shape[1]] = np.where(found < 0, np.inf, np.sqrt(np.maximum(squared, 0)))
        return index, distance

    def _exact_distance(self, rows: Array, others: Array) -> Array:
        a = self.vectors[rows].astype(np.float64)
        b = self.vectors[np.maximum(others, 0)].astype(np.float64)
        return np.where(others >= 0, np.linalg.norm(a - b, axis=1), np.inf)

    def within(self, radius: float, queries: Array | None = None, max_neighbours: int | None = None,
               max_entries: int | None = None) -> sparse.csr_matrix:
        """0/1 sparse (q, n): a 1 where a row lies within ``radius`` of the query (a row is within its own).

        ``queries`` None: every indexed row. An approximate index looks at the ``max_neighbours`` nearest rows
        per query (APPROXIMATE_RADIUS_NEIGHBOURS when None), which bounds the graph's memory at
        q * max_neighbours entries; exact search keeps every row within the radius, and raises ValueError
        once it passes ``max_entries``.
        """
        q = self.vectors if queries is None else np.asarray(queries)
        if not self.approximate:
            search = self._exact_search()
            blocks, entries = [], 0
            for start in range(0, len(q), QUERY_BLOCK):
                block = search.radius_neighbors_graph(q[start : start + QUERY_BLOCK], radius=float(radius),
                                                      mode="connectivity")
                entries += block.nnz
                if max_entries is not None and entries > max_entries:
                    raise ValueError(f"more than {max_entries} pairs lie within {radius:g} of each other")
                blocks.append(block)
            graph = sparse.vstack(blocks).tocsr() if blocks else sparse.csr_matrix((0, self.n))
        else:
            k = min(int(max_neighbours or APPROXIMATE_RADIUS_NEIGHBOURS), self.n)
            indptr, indices = [0], []
            for start in range(0, len(q), 1 << 14):
                found, measured = self._approximate_search(
                    np.ascontiguousarray(q[start : start + (1 << 14)], np.float32), k, None
                )
                inside = (found >= 0) & (measured <= radius)
                indices.append(found[inside])
                indptr.extend((indptr[-1] + np.cumsum(inside.sum(axis=1))).tolist())
            flat = np.concatenate(indices) if indices else np.zeros(0, np.int64)
            graph = sparse.csr_matrix((np.ones(len(flat), np.int32), flat, np.asarray(indptr)), shape=(len(q), self.n))
        graph = graph.astype(np.int32)
        graph.sort_indices()
        return graph


class NeighbourSearch:
    """Hands out one :class:`NeighbourIndex` per embedding set, built on first use and kept for the next."""

    def __init__(self, settings: NeighbourSettings | None = None) -> None:
        self.settings = settings or NeighbourSettings()
        self._indexes: OrderedDict[str, NeighbourIndex] = OrderedDict()

    def over(self, vectors: Array, share: bool = True) -> NeighbourIndex:
        """The index over ``vectors``: the one built before for the same content, else a new one.

        ``share`` False: a throwaway set (one cluster's points, a sample) gets its own index, which is not
        kept and so never pushes a shared one out.
        """
        if not share:
            return NeighbourIndex(vectors, self.settings)
        key = fingerprint(vectors)
        if key in self._indexes:
            self._indexes.move_to_end(key)
            return self._indexes[key]
        index = NeighbourIndex(vectors, self.settings)
        self._indexes[key] = index
        while len(self._indexes) > max(1, self.settings.keep):
            self._indexes.popitem(last=False)
        return index

    def recalls(self) -> list[dict[str, Any]]:
        """Every approximate index built so far, with its measured recall@1."""
        return [
            {"items": i.n, "dimensions": i.d, "recall_at_1": i.recall}
            for i in self._indexes.values() if i.approximate and i.recall is not None
        ]


def fingerprint(vectors: Array) -> str:
    """A digest of an array's shape, type and bytes (chunked, so a memory-mapped array is read once)."""
    x = np.asarray(vectors)
    digest = hashlib.blake2b(f"{x.shape}{x.dtype.str}".encode(), digest_size=16)
    flat = x.reshape(len(x), -1) if x.ndim else x.reshape(1)
    for start in range(0, len(flat), 1 << 16):
        digest.update(np.ascontiguousarray(flat[start : start + (1 << 16)]).data)
    return digest.hexdigest()


EXACT = NeighbourSearch()


def faiss_module() -> Any:
    """faiss, imported after scikit-learn: both bring an OpenMP runtime, and whichever loads first serves
    both; loading scikit-learn's first keeps that the same in every run, whichever stage needs faiss first."""
    importlib.import_module("sklearn")
    # Its loader reports at INFO which CPU build it tried; that is not news to a user.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    return importlib.import_module("faiss")


def search_for(neighbours: NeighbourSearch | None) -> NeighbourSearch:
    """The given search, or exact search when a function is called without one."""
    return EXACT if neighbours is None else neighbours

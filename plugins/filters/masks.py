"""Keep-masks over candidates, True = keep. Combine several with ``&``.

Each function takes per-candidate arrays (aligned with the candidate positions) and returns a boolean array of
the same length; ``None`` for a constraint means "no constraint" and keeps everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from plugins.arrays import Array
from plugins.metrics.embedding_space import l2_normalise, nearest
from plugins.neighbours import NeighbourSearch, search_for


def metric_range(values: Array, low: float | None = None, high: float | None = None) -> Array:
    """``low <= value <= high`` (both inclusive); a None bound is open; NaN never passes."""
    v = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(v)  # NaN is the only value no range can contain; infinities compare normally
    if low is not None:
        keep &= v >= float(low)
    if high is not None:
        keep &= v <= float(high)
    return keep


def has_tags(
    item_tags: Sequence[Iterable[str] | None],
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    require_all: bool = False,
) -> Array:
    """Keep items carrying any ``include`` tag (all of them with ``require_all``) and no ``exclude`` tag.

    An empty or None ``include`` accepts every item; an item whose tags are None has no tags.
    """
    wanted = set(include or ())
    banned = set(exclude or ())
    keep = np.ones(len(item_tags), dtype=bool)
    for i, tags in enumerate(item_tags):
        have = set(tags or ())
        if banned & have:
            keep[i] = False
        elif wanted:
            keep[i] = wanted <= have if require_all else bool(wanted & have)
    return keep


def in_stages(stages: Array, allowed: str | Iterable[str] | None) -> Array:
    """Keep items whose workflow stage is one of ``allowed`` (a single name is accepted too)."""
    stages = np.asarray(stages)
    if allowed is None:
        return np.ones(len(stages), dtype=bool)
    names = [allowed] if isinstance(allowed, str) else list(allowed)
    return np.isin(stages.astype(str), np.asarray(names, dtype=str))


def predicted_class(probs: Array, classes: Iterable[int] | None) -> Array:
    """Keep items whose predicted class (argmax, ties to the lower class index) is in ``classes``.

    Rows with a non-finite probability have no trustworthy prediction and are dropped.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (n, C), got {p.shape}")
    if classes is None:
        return np.ones(len(p), dtype=bool)
    finite = np.isfinite(p).all(axis=1)
    predicted = np.where(finite, np.nan_to_num(p).argmax(axis=1) if p.shape[1] else -1, -1)
    return np.asarray(finite & np.isin(predicted, np.asarray(list(classes), dtype=np.int64)))


def not_near_duplicate(
    candidate_embeddings: Array,
    reference_embeddings: Array | None,
    threshold: float,
    within_candidates: bool = False,
    neighbours: NeighbourSearch | None = None,
) -> Array:
    """Keep candidates with no reference row within ``threshold`` on L2-normalised embeddings.

    Distances are Euclidean between rows divided by their norms (as in ``plugins.metrics.uniqueness``); a
    candidate at distance <= threshold from a reference (typically the labelled set) is dropped. With
    ``within_candidates`` the candidates are also deduplicated greedily in position order: a candidate is
    dropped when it lies within the threshold of an earlier candidate that is itself kept, so each group of
    near-duplicates keeps its first member (pass candidates best-first to keep the best) and no two kept
    candidates are near-duplicates. Candidates with non-finite embeddings cannot be compared and are kept;
    reference rows with non-finite entries are ignored. ``neighbours``: the run's shared neighbour search
    (exact search when not given).
    """
    cand, cand_ok = l2_normalise(candidate_embeddings)
    keep = np.ones(len(cand), dtype=bool)
    threshold = float(threshold)
    checked = np.flatnonzero(cand_ok)
    if reference_embeddings is not None and len(checked):
        ref, ref_ok = l2_normalise(reference_embeddings)
        ref = ref[ref_ok]
        if len(ref):
            distance, _ = nearest(cand[checked], ref, neighbours=neighbours)
            keep[checked[distance <= threshold]] = False
    if within_candidates and len(checked) > 1:
        _drop_later_duplicates(cand, checked, keep, threshold, search_for(neighbours))
    return keep


def _drop_later_duplicates(unit: Array, checked: Array, keep: Array, threshold: float,
                           neighbours: NeighbourSearch) -> None:
    """Greedy in position order: drop a kept candidate with a kept earlier candidate within ``threshold``."""
    points = unit[checked]
    # The radius query only shortlists close pairs: exact search finds them through dot products, whose
    # distances can be off by about 1e-8 near zero, hence the margin; the exact re-measure below decides.
    graph = neighbours.over(points).within(threshold + 1e-6)
    # Every row finds itself; only rows with company need the sequential pass.
    crowded = np.flatnonzero(np.diff(graph.indptr) > 1)
    for i in crowded:
        if not keep[checked[i]]:
            continue
        close = graph.indices[graph.indptr[i] : graph.indptr[i + 1]]
        earlier = close[close < i]
        if len(earlier) == 0:
            continue
        exact = np.linalg.norm(points[earlier] - points[i], axis=1) <= threshold
        if keep[checked[earlier[exact]]].any():
            keep[checked[i]] = False

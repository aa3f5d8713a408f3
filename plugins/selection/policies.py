"""Budget policies: turn one score per candidate into the ordered batch to label.

A policy names what it needs by its parameters (as acquisition functions do): ``scores`` (one per candidate,
higher = label first), ``budget`` (items, or cost units when the policy takes ``cost``), and optionally
``predicted`` (the model's predicted class of each candidate) or ``cost`` (each candidate's cost, from
``selection.cost``). It returns the chosen positions, best first. The ``selection.policies`` table
(``runner/settings.py``) lists them.
"""

from __future__ import annotations

import numpy as np

from plugins.arrays import Array

POLICY_INPUTS = frozenset({"scores", "budget", "predicted", "cost"})


def topk(scores: Array, budget: float, cost: Array | None = None) -> Array:
    """Positions of the ``budget`` highest scores, best first; ties go to the lower position.

    With ``cost``, the budget is in cost units instead (see :func:`topk_cost`).
    O(n): one ``argpartition`` finds the threshold, only the chosen few are sorted.
    """
    if cost is not None:
        return topk_cost(scores, budget, cost)
    scores = np.asarray(scores)
    if scores.dtype not in (np.float32, np.float64):  # float32 scores are ranked as they are, without a copy
        scores = scores.astype(np.float64)
    n = len(scores)
    k = min(int(budget), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k == n:
        chosen = np.arange(n)
    else:
        threshold = scores[np.argpartition(scores, n - k)[n - k]]
        above = np.flatnonzero(scores > threshold)
        tied = np.flatnonzero(scores == threshold)[: k - len(above)]
        chosen = np.concatenate([above, tied])
    order = np.lexsort((chosen, -scores[chosen]))
    return np.asarray(chosen[order], dtype=np.int64)


def _best_first(scores: Array) -> Array:
    """All positions ordered by score, highest first, ties to the lower position, NaN after every number."""
    missing = np.isnan(scores)
    # NaN is parked at 0 for the score key; the leading ``missing`` key already puts it last.
    return np.asarray(np.lexsort((np.arange(len(scores)), -np.where(missing, 0.0, scores), missing)))


def _rank_within(groups: Array, order: Array) -> tuple[Array, Array]:
    """For items visited in ``order``: ``(group index, 0-based rank in its group)``, both in that order."""
    _, group = np.unique(np.asarray(groups)[order], return_inverse=True)
    group = group.reshape(-1)
    by_group = np.argsort(group, kind="stable")  # stable: keeps the best-first order inside each group
    sizes = np.bincount(group)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(len(group), dtype=np.int64)
    rank[by_group] = np.arange(len(group)) - np.repeat(starts, sizes)
    return group, rank


def class_balanced(scores: Array, budget: int, predicted: Array) -> Array:
    """Spread the budget evenly over the predicted classes, best-first.

    Round robin: the best item of every class, then the second best of every class, and so on; a class that
    runs out simply drops out of later rounds, so its share goes to the others. When the budget ends inside a
    round, that round's best items are taken. The chosen positions are returned best-first overall (score
    descending, ties to the lower position; NaN scores rank below every number).
    """
    s = np.asarray(scores, dtype=np.float64)
    if len(predicted) != len(s):
        raise ValueError(f"predicted has {len(predicted)} entries for {len(s)} scores")
    k = min(int(budget), len(s))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    order = _best_first(s)
    _, rank = _rank_within(predicted, order)
    # Sorting by (round, overall rank) lists the picks round by round, best first within a round.
    picked = np.lexsort((np.arange(len(s)), rank))[:k]
    return np.asarray(order[np.sort(picked)], dtype=np.int64)


def stratified(scores: Array, budget: int, predicted: Array) -> Array:
    """The best items of every stratum (``predicted``: a stratum per item, the predicted classes in a run), with
    the budget shared in proportion to stratum sizes.

    Quotas are ``budget * size / n`` rounded by largest remainder: every stratum gets the floor, and the
    seats left go to the largest fractional parts (equal parts: the stratum that sorts first). Quotas never
    exceed stratum sizes. Returned best-first overall, as ``class_balanced``.
    """
    s = np.asarray(scores, dtype=np.float64)
    if len(predicted) != len(s):
        raise ValueError(f"predicted has {len(predicted)} entries for {len(s)} scores")
    n = len(s)
    k = min(int(budget), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    order = _best_first(s)
    group, rank = _rank_within(predicted, order)
    sizes = np.bincount(group)
    # Integer arithmetic: exact floors and remainders, no float ties decided by rounding noise.
    quota, remainder = np.divmod(k * sizes, n)
    seats_left = k - int(quota.sum())
    quota[np.lexsort((np.arange(len(sizes)), -remainder))[:seats_left]] += 1
    return order[np.flatnonzero(rank < quota[group])].astype(np.int64)


def topk_cost(scores: Array, budget: float, cost: Array) -> Array:
    """Greedy by score under a budget in cost units: take each item, best first, while it still fits.

    An item that does not fit in what is left is skipped and the scan goes on, so a cheaper, lower-scored item
    can still fill the gap. Items with a NaN or negative cost are never taken. Totals are compared with a
    relative tolerance of 1e-9, so costs such as 0.1 + 0.2 fill a budget of 0.3. Returned in the order taken,
    which is best-first.
    """
    s = np.asarray(scores, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    if c.shape != s.shape:
        raise ValueError(f"cost has shape {c.shape} for scores of shape {s.shape}")
    remaining = float(budget)
    tolerance = 1e-9 * max(1.0, abs(remaining))
    order = _best_first(s)
    ordered_cost = c[order]
    usable = np.isfinite(ordered_cost) & (ordered_cost >= 0)
    # Cheapest usable cost from each point on: once even that does not fit, nothing later can.
    cheapest_after = np.minimum.accumulate(np.where(usable, ordered_cost, np.inf)[::-1])[::-1]
    taken: list[int] = []
    for i, (item_cost, ok) in enumerate(zip(ordered_cost.tolist(), usable.tolist(), strict=True)):
        if cheapest_after[i] > remaining + tolerance:
            break
        if ok and item_cost <= remaining + tolerance:
            taken.append(i)
            remaining -= item_cost
    return order[np.asarray(taken, dtype=np.int64)].astype(np.int64)

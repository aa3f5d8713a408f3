"""Weighted rank sum: one score from several score columns (acquisition functions, metrics) on one scale.

Each column becomes normalised ranks in [0, 1], so columns on unrelated scales (entropy in nats, a diversity
position, a brightness) weigh only by their weights. Ranks rather than values also make the sum blind to
outliers.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def normalised_ranks(values: np.ndarray) -> np.ndarray:
    """(rank - 1) / (n - 1) with average ranks for ties, higher value = higher rank; 0.5 when n = 1."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"a score column must be 1-D, got shape {v.shape}")
    if np.isnan(v).any():
        raise ValueError("a score column holds NaN")
    if len(v) == 1:
        return np.full(1, 0.5)
    return (rankdata(v, method="average") - 1.0) / max(len(v) - 1, 1)


def rank_sum(columns: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """sum over names of weights[name] * normalised_ranks(columns[name]); higher = label first.

    A negative weight makes its column a penalty.

    Every column needs a weight and every weight a column, so a misspelt name fails instead of being ignored.
    """
    if set(columns) != set(weights):
        missing = sorted(set(columns) ^ set(weights))
        raise ValueError(f"columns and weights must name the same scores; unmatched: {', '.join(missing)}")
    if not columns:
        raise ValueError("rank_sum needs at least one column")
    lengths = {name: len(np.asarray(col)) for name, col in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"score columns differ in length: {lengths}")
    total = np.zeros(next(iter(lengths.values())))
    for name in sorted(columns):
        total += float(weights[name]) * normalised_ranks(columns[name])
    return total

"""Input checks shared by the batch strategies that work on candidate and labelled embeddings."""

from __future__ import annotations

import numpy as np


def pool_and_labeled(
    embeddings: np.ndarray, labeled_embeddings: np.ndarray, budget: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(candidates (n, d), labelled (m, d), k = min(budget, n))`` as float64, the labelled rows reshaped to d."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, d), got shape {x.shape}")
    n, d = x.shape
    labeled = np.asarray(labeled_embeddings, dtype=np.float64).reshape(-1, d)
    return x, labeled, max(min(int(budget), n), 0)

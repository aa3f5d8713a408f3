"""Input checks shared by the strategies: each shape rule is written once, so every strategy words it the same."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from plugins.acquisition.uncertainty import floating
from plugins.arrays import Array


def embedding_rows(embeddings: ArrayLike, keep_float32: bool = False) -> Array:
    """``embeddings`` as an (n, d) array in float64, or with ``keep_float32`` in their own floating dtype (float32
    rows stay float32, without a copy); ValueError unless they are 2-D."""
    x = floating(embeddings) if keep_float32 else np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, d), got shape {x.shape}")
    return x


def probs_and_embeddings(probs: ArrayLike, embeddings: ArrayLike) -> tuple[Array, Array]:
    """``(probs (n, C), embeddings (n, d))`` in float64; ValueError unless both are 2-D with the same n."""
    p = np.asarray(probs, dtype=np.float64)
    x = np.asarray(embeddings, dtype=np.float64)
    if p.ndim != 2 or x.ndim != 2 or len(p) != len(x):
        raise ValueError(f"probs (n, C) and embeddings (n, d) need the same n, got {p.shape} and {x.shape}")
    return p, x


def pool_and_labeled(
    embeddings: ArrayLike, labeled_embeddings: ArrayLike, budget: int
) -> tuple[Array, Array, int]:
    """``(candidates (n, d), labelled (m, d), k = min(budget, n))`` as float64, the labelled rows reshaped to d."""
    x = embedding_rows(embeddings)
    n, d = x.shape
    labeled = np.asarray(labeled_embeddings, dtype=np.float64).reshape(-1, d)
    return x, labeled, max(min(int(budget), n), 0)

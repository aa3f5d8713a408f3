"""Uncertainty scores from one probability row per item, ``probs`` of shape (n, C).

Every function returns one float per item and higher always means "label first"; the two scores whose natural
reading is "lowest first" (margin, variance) are negated here, once.
"""

from __future__ import annotations

import numpy as np


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy -sum_c p log p in nats, with 0 log 0 = 0."""
    p = np.asarray(probs, dtype=np.float64)
    logs = np.log(p, out=np.zeros_like(p), where=p > 0)
    return -(p * logs).sum(axis=1)


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """1 - max_c p."""
    return 1.0 - np.asarray(probs, dtype=np.float64).max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """-(top1 - top2): the smallest gap between the two most likely classes scores highest."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[1] < 2:
        return np.zeros(len(p))
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return -(top2[:, 1] - top2[:, 0])


def variance(probs: np.ndarray) -> np.ndarray:
    """-var_c p: the flattest class distribution scores highest."""
    return -np.asarray(probs, dtype=np.float64).var(axis=1)

"""Scores from T stochastic predictions per item (MC dropout or an ensemble), ``samples`` of shape (T, n, C).

Higher = label first. Scores come in the samples' floating dtype (float32 in, float32 out).
"""

from __future__ import annotations

import numpy as np

from plugins.acquisition.uncertainty import entropy, floating
from plugins.arrays import Array


def bald(samples: Array) -> Array:
    """Mutual information between prediction and model: H(mean_t p_t) - mean_t H(p_t), clipped at 0."""
    s = floating(samples)
    t, n, c = s.shape
    predictive = entropy(s.mean(axis=0))
    expected = entropy(s.reshape(t * n, c)).reshape(t, n).mean(axis=0)
    # Jensen makes the difference non-negative; rounding can push agreeing samples a hair below 0.
    return np.asarray(np.maximum(predictive - expected, 0.0))


def variation_ratios(samples: Array) -> Array:
    """1 - (number of samples voting for the modal class) / T."""
    s = floating(samples)
    t, n, c = s.shape
    votes = s.argmax(axis=2)
    counts = np.zeros((n, c), dtype=np.int64)
    np.add.at(counts, (np.broadcast_to(np.arange(n), (t, n)), votes), 1)
    return np.asarray(1.0 - counts.max(axis=1) / t, dtype=s.dtype)


def mean_std(samples: Array) -> Array:
    """Mean over classes of the standard deviation over samples of p[c]."""
    return np.asarray(floating(samples).std(axis=0).mean(axis=1))

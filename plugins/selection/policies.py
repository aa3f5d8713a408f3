"""Budget policies: turn one score per candidate into the ordered batch to label."""

from __future__ import annotations

import numpy as np


def topk(scores: np.ndarray, budget: int) -> np.ndarray:
    """Positions of the ``budget`` highest scores, best first; ties go to the lower position.

    O(n): one ``argpartition`` finds the threshold, only the chosen few are sorted.
    """
    scores = np.asarray(scores, dtype=np.float64)
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
    return chosen[order].astype(np.int64)

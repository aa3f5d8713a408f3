"""Which given labels look wrong, by confident learning (cleanlab), from out-of-fold predicted probabilities.

An audit is called with ``labels`` (n,) in 0..k-1 and ``pred_probs`` (n, k), each row predicted by a model that
did not see that item, and returns ``(flagged, scores)``: a boolean mask of the labels it believes wrong and, for
every item, how likely its label is wrong (higher = more suspect). The runner computes the probabilities (see
``runner.audit``); the audit only judges them.
"""

from __future__ import annotations

import numpy as np

from plugins.arrays import Array
from plugins.errors import InputError

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")
QUALITY = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")


class FindIssues:
    """cleanlab's ``find_label_issues`` (Northcutt et al. 2021, confident learning) flags the issues; the score
    is one minus cleanlab's label quality (``self_confidence``: the probability the held-out model gives the
    given label), so 1 is a label the model rules out and 0 one it is sure of."""

    def __init__(self, filter_by: str = "prune_by_noise_rate", quality: str = "self_confidence") -> None:
        if filter_by not in FILTERS:
            raise InputError(f"audit.function.filter_by='{filter_by}' is not one of {', '.join(FILTERS)}")
        if quality not in QUALITY:
            raise InputError(f"audit.function.quality='{quality}' is not one of {', '.join(QUALITY)}")
        self.filter_by = filter_by
        self.quality = quality

    def __call__(self, labels: Array, pred_probs: Array) -> tuple[Array, Array]:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        labels = np.asarray(labels, dtype=np.int64)
        pred_probs = np.asarray(pred_probs, dtype=np.float64)
        # One process: the result does not depend on how many workers a machine has, and no pool is started.
        flagged = find_label_issues(labels, pred_probs, filter_by=self.filter_by, n_jobs=1)
        scores = 1.0 - get_label_quality_scores(labels, pred_probs, method=self.quality)
        return np.asarray(flagged, dtype=bool), np.asarray(scores, dtype=np.float64)

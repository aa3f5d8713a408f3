"""Simulation's annotator: reveals the ground truth of the selected items."""

from __future__ import annotations

import numpy as np


def reveal(truth: np.ndarray) -> np.ndarray:
    """The labels an ideal annotator gives the selected items: their truth. Items without truth are an error."""
    labels = np.asarray(truth, dtype=np.int64)
    if (labels < 0).any():
        raise ValueError(f"{int((labels < 0).sum())} selected items have no ground truth to reveal")
    return labels

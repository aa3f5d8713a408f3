"""What a model on flattened pixels sees of its images: one row per item."""

from __future__ import annotations

import numpy as np

from plugins.arrays import Array


def rows(X: Array) -> Array:
    """Each item's pixels as one row, in their own dtype."""
    return np.asarray(X).reshape(len(X), -1)


def float64_rows(X: Array) -> Array:
    """Rows in float64 for fitting and predicting.

    Several estimators (LogisticRegression among them) keep float32 input in float32, and an iterative solver
    fed float32 gradients takes a path that depends on the CPU's BLAS kernels: on MNIST, probabilities from
    two kernels differed by up to 2e-2 in float32 against 2e-8 in float64 (docs/reproducibility.md).
    """
    return np.asarray(X, dtype=np.float64).reshape(len(X), -1)

"""Simulation's annotators: the act function turns the selected items' truths into the labels they get.

The runner passes what the function's parameters name: ``truth`` (the selected items' true classes), ``rng``
(the stage's seeded numpy Generator) and ``n_classes``.
"""

from __future__ import annotations

import numpy as np

from plugins.arrays import Array


def reveal(truth: Array) -> Array:
    """The labels an ideal annotator gives the selected items: their truth. Items without truth are an error."""
    labels = np.asarray(truth, dtype=np.int64)
    if (labels < 0).any():
        raise ValueError(f"{int((labels < 0).sum())} selected items have no ground truth to reveal")
    return labels


def noisy(truth: Array, rng: np.random.Generator, n_classes: int, flip_rate: float = 0.1) -> Array:
    """An annotator who errs: each label is, with probability ``flip_rate``, one of the other classes (uniform)."""
    if not 0.0 <= flip_rate <= 1.0:
        raise ValueError(f"flip_rate={flip_rate} must lie in [0, 1]")
    if n_classes < 2:
        raise ValueError("label noise needs at least two classes")
    labels = reveal(truth)
    flip = rng.random(len(labels)) < flip_rate
    # An offset of 1..n_classes-1 lands on every other class with equal probability, never on the truth.
    offsets = rng.integers(1, n_classes, size=len(labels))
    return np.where(flip, (labels + offsets) % n_classes, labels)

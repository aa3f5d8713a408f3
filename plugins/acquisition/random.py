"""The baseline every acquisition function must beat."""

from __future__ import annotations

import numpy as np


def uniform(n_items: int, rng: np.random.Generator) -> np.ndarray:
    """Independent uniform scores from the run's seeded generator: a random batch."""
    return rng.random(n_items)

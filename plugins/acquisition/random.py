"""The baseline every acquisition function must beat."""

from __future__ import annotations

import numpy as np

from plugins.arrays import Array


def uniform(n_items: int, rng: np.random.Generator) -> Array:
    """Independent uniform scores from the run's seeded generator: a random batch."""
    return rng.random(n_items)

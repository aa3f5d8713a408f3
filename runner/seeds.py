"""Every random draw of a run comes from a generator seeded by ``(seed, round, stage)``, never from a shared
stream, so skipping stages that a resumed run finds done cannot shift the draws of later ones."""

from __future__ import annotations

import numpy as np

STAGE_CODES = {
    "import": 0, "train": 1, "evaluate": 2, "score": 3, "select": 4, "act": 5, "embed": 6, "metrics": 7,
    "audit": 8, "stop_set": 9,
}


def stage_rng(seed: int, round_: int, stage: str) -> np.random.Generator:
    return np.random.default_rng([seed, round_ + 1, STAGE_CODES[stage]])


def stage_seed(seed: int, round_: int, stage: str) -> int:
    """An integer seed for libraries that take one (scikit-learn, torch)."""
    return int(stage_rng(seed, round_, stage).integers(2**31 - 1))

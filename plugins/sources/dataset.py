"""The one shape every data source returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Items of one project.

    ``images`` are float32 in [0, 1], shape (n, H, W) for grayscale or (n, H, W, C) for colour.
    ``labels`` hold the class index of each item, or -1 where no label exists (the pool of a real project;
    in simulation every item has its truth here and the oracle reveals it on selection).
    ``split`` is ``"pool"`` or ``"test"`` per item when the source has its own split, else None (the runner
    then splits by seed).
    ``original``, for a source whose ``images`` were resized to the model's input: item index -> that item's image
    at its own size (uint8 or float in [0, 1]), read when image-level metrics need it, so the originals never all
    sit in memory at once. None: ``images`` are the originals.
    """

    item_ids: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    split: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    original: Callable[[int], np.ndarray] | None = None

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if len(self.images) != n or len(self.labels) != n:
            raise ValueError(
                f"dataset arrays disagree in length: {n} ids, {len(self.images)} images, {len(self.labels)} labels"
            )
        if self.split is not None and len(self.split) != n:
            raise ValueError(f"dataset split has {len(self.split)} entries for {n} items")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

"""Size metrics, read from each item's shape alone (pixel values, even non-finite ones, do not matter)."""

from __future__ import annotations

import numpy as np

from plugins.arrays import Array
from plugins.metrics._images import Images, count, is_stacked, item_shapes


def _widths_heights(images: Images) -> tuple[Array, Array]:
    if is_stacked(images):
        # One shape for all: no per-item work, whatever n is.
        shape = item_shapes(images[:1])[0] if count(images) else None
        height, width = (np.nan, np.nan) if shape is None else shape[:2]
        return np.full(count(images), width, dtype=np.float64), np.full(count(images), height, dtype=np.float64)
    shapes = item_shapes(images)
    h = np.array([np.nan if s is None else s[0] for s in shapes], dtype=np.float64)
    w = np.array([np.nan if s is None else s[1] for s in shapes], dtype=np.float64)
    return w, h


def aspect_ratio(images: Images) -> Array:
    """Width / height in pixels per item (rows are the height); NaN for an item of unusable shape."""
    w, h = _widths_heights(images)
    return w / h


def area(images: Images) -> Array:
    """Width * height in pixels per item; NaN for an item of unusable shape."""
    w, h = _widths_heights(images)
    return w * h

"""Shared image handling for the metric families: validation, grayscale conversion, bounded-memory batches.

Accepted inputs:
- an array of shape (n, H, W) (grayscale) or (n, H, W, C) with C in {1, 3, 4} (colour; a fourth channel is
  alpha and is ignored);
- a list (or 1-D object array) of per-item arrays of shape (H, W) or (H, W, C), sizes free to differ;
- :class:`plugins.sources.dataset.StoredImages` (a pool on disk), read a batch at a time like an array.

Floating (and boolean) pixels are taken to lie in [0, 1], the contract of ``plugins.sources.dataset.Dataset``,
and are scaled by 255; integer pixels (8-bit images read straight from files) are taken as 0..255 already.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeGuard

import numpy as np

from plugins.arrays import Array
from plugins.sources.dataset import StoredImages

# ITU-R BT.601 luma weights: what OpenCV and Pillow use for RGB -> gray, so intensities match the usual tools.
LUMA = np.array([0.299, 0.587, 0.114])
COLOUR_CHANNELS = (1, 3, 4)
# Pixels per batch (about 32 MiB of float64 per temporary): bounds memory whatever the image size.
MAX_BATCH_PIXELS = 1 << 22

Images = Array | StoredImages | Sequence[Any]


def is_stacked(images: Images) -> TypeGuard[Array | StoredImages]:
    """True for one numeric array holding every item; False for a list of per-item arrays."""
    return isinstance(images, np.ndarray | StoredImages) and images.dtype != object


def count(images: Images) -> int:
    return int(images.shape[0]) if is_stacked(images) else len(images)


def item_shape_ok(shape: tuple[int, ...]) -> bool:
    """(H, W) or (H, W, C) with a known channel count and no empty axis."""
    if len(shape) == 2:
        return shape[0] > 0 and shape[1] > 0
    if len(shape) == 3:
        return shape[0] > 0 and shape[1] > 0 and shape[2] in COLOUR_CHANNELS
    return False


def item_array(item: Any) -> Array | None:
    """One list item as a numeric array of an accepted shape, or None when it is not one."""
    try:
        arr = np.asarray(item)
    except (ValueError, TypeError):
        return None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        return None
    if np.iscomplexobj(arr) or not item_shape_ok(arr.shape):
        return None
    return arr


def item_shapes(images: Images) -> list[tuple[int, ...] | None]:
    """Per item: its (H, W[, C]) shape, or None when the item is not a usable image."""
    if is_stacked(images):
        shape = tuple(int(s) for s in images.shape[1:])
        usable = item_shape_ok(shape) and (np.issubdtype(images.dtype, np.number) or images.dtype == bool)
        return [shape if usable else None] * count(images)
    shapes: list[tuple[int, ...] | None] = []
    for item in images:
        arr = item_array(item)
        shapes.append(None if arr is None else tuple(int(s) for s in arr.shape))
    return shapes


def to_gray255(batch: Array) -> Array:
    """(m, H, W[, C]) pixels -> (m, H, W) float64 gray intensities on the 0..255 scale."""
    scale = 1.0 if np.issubdtype(batch.dtype, np.integer) else 255.0
    if batch.ndim == 4 and batch.shape[3] == 1:
        gray = batch[..., 0].astype(np.float64)
    elif batch.ndim == 4:
        # float64 weights make the product float64 without a separate full-size cast of the input.
        gray = batch[..., :3] @ LUMA
    else:
        gray = batch.astype(np.float64)
    if scale != 1.0:
        gray *= scale
    return gray


def gray_batches(images: Images) -> Iterator[tuple[Array, Array, Array]]:
    """Yield ``(positions, gray, finite)`` for every measurable item, in batches of at most MAX_BATCH_PIXELS.

    ``gray`` is (m, H, W) float64 on 0..255; items with a non-finite pixel have ``finite`` False and their
    pixels zeroed, so callers can compute on the whole batch without warnings and then blank those items out.
    Items of an unusable shape or type are never yielded.
    """
    if is_stacked(images):
        shapes = item_shapes(images[:0]) if count(images) == 0 else item_shapes(images[:1])
        if count(images) == 0 or shapes[0] is None:
            return
        groups: list[tuple[Array, Callable[[Array], Array]]] = [
            (np.arange(count(images)), lambda pos: images[pos[0] : pos[-1] + 1])
        ]
    else:
        # Ragged lists: stack items of one shape (and one integer/float kind) so each group is vectorised.
        arrays = [item_array(item) for item in images]
        by_key: dict[tuple[Any, ...], list[int]] = {}
        for i, arr in enumerate(arrays):
            if arr is not None:
                by_key.setdefault((arr.shape, np.issubdtype(arr.dtype, np.integer)), []).append(i)

        def stack(pos: Array) -> Array:
            return np.stack([arrays[i] for i in pos])

        groups = [(np.asarray(idx), stack) for idx in by_key.values()]
    for positions, fetch in groups:
        first = positions[0]
        pixels_per_item = int(np.prod(_shape_of(images, first)[:2]))
        step = max(1, MAX_BATCH_PIXELS // pixels_per_item)
        for start in range(0, len(positions), step):
            pos = positions[start : start + step]
            gray = to_gray255(fetch(pos))
            finite = np.asarray(np.isfinite(gray).all(axis=(1, 2)))
            if not finite.all():
                gray[~finite] = 0.0
            yield pos, gray, finite


def _shape_of(images: Images, i: int) -> tuple[int, ...]:
    if is_stacked(images):
        return tuple(images.shape[1:])
    return tuple(np.shape(images[i]))


def per_item(images: Images, measure: Callable[[Array], Array]) -> Array:
    """Apply ``measure`` ((m, H, W) gray 0..255 -> (m,)) batch-wise; NaN for every item it cannot see."""
    out = np.full(count(images), np.nan)
    for positions, gray, finite in gray_batches(images):
        values = np.asarray(measure(gray), dtype=np.float64)
        values[~finite] = np.nan
        out[positions] = values
    return out


def invalid_items(images: Images) -> Array:
    """Boolean mask, True where an item cannot be measured: unusable shape or type, or a non-finite pixel.

    Geometry metrics need only the shape, so they stay defined for items with non-finite pixels; intensity and
    sharpness metrics are NaN exactly where this mask is True (sharpness also where an item is below 3x3).
    """
    bad = np.ones(count(images), dtype=bool)
    for positions, _, finite in gray_batches(images):
        bad[positions] = ~finite
    return bad

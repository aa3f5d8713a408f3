"""Intensity metrics of the grayscale image (colour -> gray with BT.601 luma weights), on 0..255 scale."""

from __future__ import annotations

from plugins.arrays import Array
from plugins.metrics._images import Images, per_item


def brightness(images: Images) -> Array:
    """Mean gray intensity / 255, in [0, 1]: 0 for black, 1 for white. NaN for an unmeasurable item."""
    return per_item(images, lambda gray: gray.mean(axis=(1, 2)) / 255.0)


def contrast(images: Images) -> Array:
    """Population standard deviation (ddof=0) of the gray intensities / 255, in [0, 0.5]; 0 when flat."""
    return per_item(images, lambda gray: gray.std(axis=(1, 2)) / 255.0)

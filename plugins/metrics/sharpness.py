"""Focus metrics from the variance of the Laplacian, on 0..255 gray intensities.

The Laplacian is the 3x3 kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]] applied at every interior pixel (the
"valid" region: no padding, so an H x W image gives (H-2) x (W-2) responses and borders never invent edges).
Its variance is the population variance (ddof=0) of those responses. Items smaller than 3x3 have no interior
and score NaN.
"""

from __future__ import annotations

import numpy as np

from plugins.arrays import Array
from plugins.metrics._images import Images, per_item


def laplacian_variance(gray: Array) -> Array:
    """(m, H, W) gray 0..255 -> (m,) variance of the valid 3x3 Laplacian response (NaN below 3x3)."""
    if gray.shape[1] < 3 or gray.shape[2] < 3:
        return np.full(gray.shape[0], np.nan)
    centre = gray[:, 1:-1, 1:-1]
    # Shifted views instead of a convolution: five slices of one array, no padding and no per-item loop.
    response = gray[:, :-2, 1:-1] + gray[:, 2:, 1:-1]
    response += gray[:, 1:-1, :-2]
    response += gray[:, 1:-1, 2:]
    response -= 4.0 * centre
    return np.asarray(response.var(axis=(1, 2)))


def sharpness(images: Images) -> Array:
    """Variance of the 3x3 Laplacian over the valid interior, on 0..255 intensities (0 for a flat image).

    Unbounded above: a 0/255 checkerboard scores 1020**2 = 1,040,400.
    """
    return per_item(images, laplacian_variance)


def blur(images: Images) -> Array:
    """Encord Active's blur: ``1 - sharpness``, i.e. one minus the Laplacian variance on 0..255 intensities.

    It is not normalised: a flat image scores 1 (the maximum) and sharper images score ever more negative
    values, so higher means blurrier and the ranking is exactly the reverse of ``sharpness``.
    """
    return 1.0 - sharpness(images)

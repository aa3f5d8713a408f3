"""Pixels reduced by PCA: the embedder that needs no weights, so it always runs offline."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from plugins.metrics.embedding_space import distinct_rows

COVARIANCE_MAX_PIXELS = 2048
EXACT_MAX_RANK = 1000


def pca_solver(n_items: int, n_pixels: int) -> str:
    """The cheapest exact PCA solver where one is cheap, else the seeded randomized one.

    - many items, at most a few thousand pixels: eigen-decomposition of the pixel covariance, O(n d^2 + d^3)
      (60,000 x 784 in about 4 s);
    - otherwise, rank at most EXACT_MAX_RANK: a full SVD, O(n d min(n, d));
    - otherwise randomized SVD, whose draws come from ``random_state``.
    The exact solvers draw no random numbers at all.
    """
    if n_pixels <= COVARIANCE_MAX_PIXELS and n_items >= n_pixels:
        return "covariance_eigh"
    if min(n_items, n_pixels) <= EXACT_MAX_RANK:
        return "full"
    return "randomized"


class PixelPCA:
    """Flatten each image and project it on the first ``n_components`` principal axes (``whiten=False``).

    Fewer components are kept when the data has fewer finite items or pixels than asked for. Items with a
    non-finite pixel take no part in the fit and get a row of NaN, which the embedding metrics treat as
    "cannot be placed". Identical images get bit-identical rows (each distinct image is projected once), so
    exact duplicates stay exact duplicates for ``plugins.metrics.uniqueness``.
    """

    def __init__(self, n_components: int = 50, random_state: int = 0) -> None:
        if int(n_components) < 1:
            raise ValueError(f"n_components must be at least 1, got {n_components}")
        self.n_components = int(n_components)
        self.random_state = int(random_state)
        self.pca: PCA | None = None

    def fit_transform(self, images: np.ndarray) -> np.ndarray:
        """(n, H, W[, C]) images -> (n, d) float32 embeddings, d = min(n_components, finite items, pixels)."""
        if not isinstance(images, np.ndarray) or images.dtype == object:
            raise ValueError("PixelPCA needs one array of equally sized images; resize ragged images first")
        if images.ndim < 2:
            raise ValueError(f"images must have shape (n, H, W[, C]), got {images.shape}")
        flat = images.reshape(len(images), -1).astype(np.float32, copy=False)
        finite = np.isfinite(flat).all(axis=1)
        valid = flat[finite] if not finite.all() else flat
        if len(valid) == 0:
            raise ValueError("PixelPCA found no image without non-finite pixels to fit on")
        d = min(self.n_components, valid.shape[0], valid.shape[1])
        solver = pca_solver(*valid.shape)
        self.pca = PCA(n_components=d, whiten=False, svd_solver=solver, random_state=self.random_state)
        self.pca.fit(valid)
        # One projection per distinct image: BLAS may round identical rows differently at different offsets.
        first, copy_of = distinct_rows(valid, return_inverse=True)
        projected = self.pca.transform(valid[first]).astype(np.float32)[copy_of]
        out = np.full((len(images), d), np.nan, dtype=np.float32)
        out[finite] = projected
        return out

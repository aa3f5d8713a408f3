"""Pixels reduced by PCA: the embedder that needs no weights, so it always runs offline."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA

from plugins.arrays import Array
from plugins.metrics.embedding_space import distinct_rows, row_digests
from plugins.protocols import BlockMap

COVARIANCE_MAX_PIXELS = 2048
EXACT_MAX_RANK = 1000
# Items per block of the streamed fit: fixed, so the sums (and so the embeddings) never depend on how the
# blocks are spread over processes or machines.
STREAM_BLOCK = 32768


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

    Above ``stream_above`` items the fit streams: the mean and the pixel covariance are summed over fixed
    blocks of STREAM_BLOCK items (each block a task of ``map_blocks`` when given, in this process otherwise),
    float32 products inside a block and float64 sums across blocks, added in block order, so the result does
    not depend on where the blocks ran. The axes are the covariance's leading eigenvectors and the projection
    goes block by block; memory holds one block of pixels and the (n, d) result. Duplicates are found by a
    128-bit digest of each image's pixels instead of by sorting the images.
    """

    def __init__(self, n_components: int = 50, random_state: int = 0, stream_above: int | None = None) -> None:
        if int(n_components) < 1:
            raise ValueError(f"n_components must be at least 1, got {n_components}")
        self.n_components = int(n_components)
        self.random_state = int(random_state)
        self.stream_above = None if stream_above is None else int(stream_above)

    def fit_transform(self, images: Any, map_blocks: BlockMap | None = None) -> Array:
        """(n, H, W[, C]) images -> (n, d) float32 embeddings, d = min(n_components, finite items, pixels)."""
        if self.stream_above is not None and len(images) > self.stream_above:
            return self._streamed(images, map_blocks or (lambda function, blocks: [function(b) for b in blocks]))
        if hasattr(images, "__array__") and not isinstance(images, np.ndarray):  # images on disk, few enough to hold
            images = np.asarray(images)
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
        pca = PCA(n_components=d, whiten=False, svd_solver=solver, random_state=self.random_state)
        pca.fit(valid)
        # One projection per distinct image: BLAS may round identical rows differently at different offsets.
        first, copy_of = distinct_rows(valid, return_inverse=True)
        projected = pca.transform(valid[first]).astype(np.float32)[copy_of]
        out = np.full((len(images), d), np.nan, dtype=np.float32)
        out[finite] = projected
        return out

    def _streamed(self, images: Any, map_blocks: BlockMap) -> Array:
        n = len(images)
        if len(images.shape) < 2:
            raise ValueError(f"images must have shape (n, H, W[, C]), got {images.shape}")
        blocks = [slice(start, min(start + STREAM_BLOCK, n)) for start in range(0, n, STREAM_BLOCK)]
        firsts = map_blocks(lambda block: _block_sums(images, block), blocks)
        count = sum(c for c, _, _ in firsts)
        if count == 0:
            raise ValueError("PixelPCA found no image without non-finite pixels to fit on")
        total = firsts[0][1].copy()
        for _, sums, _ in firsts[1:]:
            total += sums
        mean = total / count
        partials = map_blocks(lambda block: _block_scatter(images, block, mean), blocks)
        scatter = partials[0].copy()
        for part in partials[1:]:
            scatter += part
        d = min(self.n_components, count, len(mean))
        values, vectors = np.linalg.eigh(scatter / max(count - 1, 1))
        components = vectors[:, np.argsort(values)[::-1][:d]].T
        # The sign of an axis is arbitrary: make each axis's largest entry positive, so it is the same everywhere.
        components *= np.sign(components[np.arange(d), np.abs(components).argmax(axis=1)])[:, None]
        out = np.concatenate(map_blocks(lambda block: _block_project(images, block, mean, components), blocks))
        # Identical images get bit-identical rows: every copy takes the row of its first occurrence.
        digests = np.concatenate([digest for _, _, digest in firsts])
        _, first, copy_of = np.unique(digests, return_index=True, return_inverse=True)
        copies = np.flatnonzero(first[copy_of.reshape(-1)] != np.arange(n))
        out[copies] = out[first[copy_of.reshape(-1)][copies]]
        return out


def _block_pixels(images: Any, block: slice) -> tuple[Array, Array]:
    flat = np.asarray(images[block], dtype=np.float32).reshape(block.stop - block.start, -1)
    return flat, np.all(np.isfinite(flat), axis=1)


def _block_sums(images: Any, block: slice) -> tuple[int, Array, Array]:
    """Finite items, their pixel sums (float64), and a digest of every item's pixels."""
    flat, finite = _block_pixels(images, block)
    return int(finite.sum()), flat[finite].sum(axis=0, dtype=np.float64), row_digests(flat)


def _block_scatter(images: Any, block: slice, mean: Array) -> Array:
    flat, finite = _block_pixels(images, block)
    # float32 products inside a block (half the time of float64), float64 sums across blocks.
    centred: Array = flat[finite] - mean.astype(np.float32)
    return np.asarray(centred.T @ centred, dtype=np.float64)


def _block_project(images: Any, block: slice, mean: Array, components: Array) -> Array:
    flat, finite = _block_pixels(images, block)
    out = np.full((len(flat), len(components)), np.nan, dtype=np.float32)
    out[finite] = (flat[finite] - mean.astype(np.float32)) @ components.T.astype(np.float32)
    return out

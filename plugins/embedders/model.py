"""Embeddings from the current model (its ``embed``, e.g. the CNN's penultimate layer), recomputed every round.

Until a model is trained, or when the model has no ``embed``, the ``fallback`` embedder (computed once per run)
stands in.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from plugins.arrays import Array
from plugins.protocols import Embedder, EmbedsItems

log = logging.getLogger("runner")


class ModelEmbedding:
    """``embed_with(model, images)``: the model's own representation of the images, or None to use the fallback.

    A :class:`~plugins.protocols.ModelEmbedder`; the model is asked when it is
    :class:`~plugins.protocols.EmbedsItems`.
    """

    def __init__(self, fallback: Embedder) -> None:
        if not isinstance(fallback, Embedder):
            raise TypeError("embedder.fallback must be an embedder with fit_transform (e.g. PixelPCA)")
        self.fallback = fallback
        self._told = False

    def embed_with(self, model: Any | None, images: Array) -> Array | None:
        if isinstance(model, EmbedsItems):
            return np.asarray(model.embed(images), dtype=np.float64)
        if not self._told:
            log.info("embedder=model: no trained model with embed() yet, using the fallback embeddings")
            self._told = True
        return None

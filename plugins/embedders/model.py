"""Embeddings from the current model (its ``embed``, e.g. the CNN's penultimate layer), recomputed every round.

Until a model is trained, or when the model has no ``embed``, the ``fallback`` embedder (computed once per run)
stands in.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger("runner")


class ModelEmbedding:
    """``embed_with(model, images)``: the model's own representation of the images, or None to use the fallback."""

    def __init__(self, fallback: Any) -> None:
        if not hasattr(fallback, "fit_transform"):
            raise TypeError("embedder.fallback must be an embedder with fit_transform (e.g. PixelPCA)")
        self.fallback = fallback
        self._told = False

    def embed_with(self, model: Any | None, images: np.ndarray) -> np.ndarray | None:
        if model is not None and hasattr(model, "embed"):
            return np.asarray(model.embed(images), dtype=np.float64)
        if not self._told:
            log.info("embedder=model: no trained model with embed() yet, using the fallback embeddings")
            self._told = True
        return None

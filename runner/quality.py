"""Embeddings and data-quality metrics: computed once per run (per round on a platform), kept in the store."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from plugins.neighbours import NeighbourSearch
from plugins.protocols import BlockEmbedder, BlockMap, ModelEmbedder, spreads_blocks
from runner.compute import Compute, shards
from runner.embedding_cache import Cached, EmbeddingCache, worth_caching
from runner.errors import ConfigError
from runner.instantiate import instantiate_callable

log = logging.getLogger("runner")


@dataclass(frozen=True)
class Metric:
    """One configured metric: its function, what its first parameter is given, and which items it covers."""

    name: str
    function: Callable[..., np.ndarray]
    source: str  # "images" or "embeddings"
    unlabeled_only: bool
    extra_inputs: tuple[str, ...]  # "n_classes", "rng", "neighbours"

    @property
    def per_item(self) -> bool:
        """An image metric of every item that draws nothing: its value for an item depends on that item only,
        so it can be computed shard by shard."""
        return self.source == "images" and not self.unlabeled_only and "rng" not in self.extra_inputs


def metric_set(metrics: dict[str, Any]) -> list[Metric]:
    """The metrics of ``metrics.names``, in that order, built from ``metrics.functions`` and ``metrics.scope``."""
    functions, scopes = metrics["functions"], metrics["scope"]
    found = []
    for name in metrics["names"]:
        if name not in functions:
            raise ConfigError(f"metrics.names lists '{name}' but metrics.functions.{name} is not defined")
        function = instantiate_callable(functions[name], f"metrics.functions.{name}")
        try:
            params = list(inspect.signature(function).parameters)
        except ValueError as exc:  # a partial with arguments the function does not take
            raise ConfigError(f"metrics.functions.{name}: {exc}") from None
        if not params or params[0] not in ("images", "embeddings"):
            raise ConfigError(f"metrics.functions.{name}: the first parameter must be 'images' or 'embeddings'")
        extra = tuple(p for p in params[1:] if p in ("n_classes", "rng", "neighbours"))
        found.append(Metric(name, function, params[0], scopes.get(name) == "unlabeled", extra))
    return found


class Embeddings:
    """Where item embeddings come from.

    A static embedder (``fit_transform(images)``: pixel PCA, a pretrained encoder) is computed once, at the
    ``embed`` stage, and kept in the store under ``embeddings/static``. An embedder with ``embed_with(model,
    images)`` (the model's own representation) is asked every round; where it answers None its ``fallback``,
    a static embedder, stands in.
    """

    def __init__(self, embedder: Any, needed: bool, cache: EmbeddingCache | None = None) -> None:
        self.embedder = embedder
        self.static_embedder = embedder.fallback if isinstance(embedder, ModelEmbedder) else embedder
        self.needed = needed
        # Kept between runs only for an embedder that says it is worth it (training or running a network).
        self.cache = cache if worth_caching(self.static_embedder) else None
        self.loss_curve: np.ndarray | None = None
        self.images: np.ndarray | None = None
        self.load: Callable[[], np.ndarray | None] | None = None
        self._static: np.ndarray | None = None

    def bind(self, images: np.ndarray, load: Callable[[], np.ndarray | None]) -> None:
        """The run's images and how to read the stored static embeddings."""
        self.images, self.load, self._static = images, load, None

    def fit_static(self, images: Any, map_blocks: BlockMap | None = None) -> np.ndarray:
        """The static embeddings, from the cache where they are there; ``map_blocks`` (run a function over blocks
        of items, in order: the run's compute backend) goes to an embedder that can spread its work, such as
        PixelPCA's streamed fit. An embedder that trains keeps its loss per epoch in ``loss_curve_``, which
        lands in ``loss_curve``."""
        if self.cache is None:
            return self._computed(images, map_blocks).vectors
        key = self.cache.key(images)
        with self.cache.held(key):
            entry = self.cache.load(key, len(images))
            if entry is None:
                entry = self._computed(images, map_blocks)
                self.cache.save(key, entry)
        self.loss_curve = entry.loss_curve
        return entry.vectors

    def _computed(self, images: Any, map_blocks: BlockMap | None) -> Cached:
        embedder = self.static_embedder
        if map_blocks is not None and spreads_blocks(embedder):
            vectors = cast(BlockEmbedder, embedder).fit_transform(images, map_blocks=map_blocks)
        else:
            vectors = embedder.fit_transform(images)
        curve = getattr(embedder, "loss_curve_", None)
        self.loss_curve = None if curve is None else np.asarray(curve, dtype=np.float64)
        return Cached(np.asarray(vectors), self.loss_curve)

    def static(self) -> np.ndarray | None:
        if self._static is None and self.load is not None:
            self._static = self.load()
        return self._static

    def of(self, indices: np.ndarray, model: Any | None, chunk_size: int | None = None) -> np.ndarray:
        """The embeddings of ``indices``: the model's own, asked ``chunk_size`` items at a time, where the embedder
        asks the model and it answers; else the static ones."""
        if isinstance(self.embedder, ModelEmbedder) and self.images is not None:
            size = chunk_size or max(len(indices), 1)
            parts = []
            for start in range(0, max(len(indices), 1), size):
                vectors = self.embedder.embed_with(model, self.images[indices[start:start + size]])
                if vectors is None:
                    break
                parts.append(np.asarray(vectors))
            else:
                return parts[0] if len(parts) == 1 else np.concatenate(parts)
        static = self.static()
        if static is None:
            raise RuntimeError("embeddings were needed but not computed at the embed stage")
        return np.asarray(static[indices])


# Pixels of original images read at once for an image metric (about 48 MiB of RGB bytes).
ORIGINAL_PIXELS_PER_CHUNK = 1 << 24


def compute_metrics(metrics: list[Metric], images: Any, item_ids: np.ndarray, n_classes: int,
                    static_embeddings: np.ndarray | None, unlabeled: np.ndarray, rng: np.random.Generator,
                    original: Callable[[int], np.ndarray] | None = None,
                    neighbours: NeighbourSearch | None = None, compute: Compute | None = None,
                    shard_items: int | None = None) -> dict[str, np.ndarray]:
    """One float column per metric over every item (NaN where it could not be computed).

    Image metrics see each item's original image where the source keeps one (``original``: its own size and
    pixels, read a chunk of items at a time), else ``images``. A metric scoped to ``unlabeled`` (Image
    Diversity) is computed over the unlabelled items only. A failing metric, or failing items, are reported and
    left NaN: a metric never stops a run. Per-item image metrics go shard by shard through ``compute`` (as Ray
    tasks with compute=ray); the embedding metrics search the run's shared ``neighbours``.
    """
    n = len(item_ids)
    compute = compute or Compute()
    columns = {}
    for metric in metrics:
        scope = unlabeled if metric.unlabeled_only else np.arange(n)
        source = images if metric.source == "images" else static_embeddings
        if source is None:
            raise RuntimeError(f"metric '{metric.name}' needs embeddings, which the embed stage did not compute")
        available = {"n_classes": n_classes, "rng": rng, "neighbours": neighbours}
        extra = {name: available[name] for name in metric.extra_inputs}
        column = np.full(n, np.nan)
        try:
            if metric.source == "images" and original is not None:
                values = _on_originals(metric, scope, original, extra)
            elif metric.per_item:
                task = functools.partial(_measure_part, metric.function, metric.source, source, extra)
                parts = compute.map(task, shards(n, shard_items or n))
                values = np.concatenate(parts) if parts else np.zeros(0)
            else:
                # Every item: the array itself, not a copy of it through an index.
                given = source if len(scope) == n else source[scope]
                values = np.asarray(metric.function(**{metric.source: given}, **extra), dtype=np.float64)
            if values.shape != (len(scope),):
                raise ValueError(f"returned shape {values.shape}, expected ({len(scope)},)")
            column[scope] = values
        except Exception as exc:  # a metric's own bug must not end the run; it is reported instead
            log.warning(f"metric '{metric.name}' could not be computed: {exc}")
            columns[metric.name] = column
            continue
        failed = scope[np.isnan(column[scope])]
        if len(failed):
            shown = ", ".join(str(item_ids[i]) for i in failed[:5])
            log.warning(f"metric '{metric.name}': {len(failed)} items could not be scored (first: {shown})")
        columns[metric.name] = column
    return columns


def _on_originals(metric: Metric, scope: np.ndarray, original: Callable[[int], np.ndarray],
                  extra: dict[str, Any]) -> np.ndarray:
    """``metric`` over the original images of ``scope``, given as lists of per-item arrays of at most
    ORIGINAL_PIXELS_PER_CHUNK pixels in all, so memory stays bounded however large the originals are."""
    parts: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    pixels = 0

    def flush() -> None:
        values = np.asarray(metric.function(images=batch, **extra), dtype=np.float64)
        if values.shape != (len(batch),):
            raise ValueError(f"returned shape {values.shape}, expected ({len(batch)},)")
        parts.append(values)
        batch.clear()

    for index in scope:
        image = original(int(index))
        batch.append(image)
        pixels += int(np.prod(image.shape[:2]))
        if pixels >= ORIGINAL_PIXELS_PER_CHUNK:
            flush()
            pixels = 0
    if batch:
        flush()
    return np.concatenate(parts) if parts else np.zeros(0)
def _measure_part(function: Callable[..., np.ndarray], source_name: str, source: Any, extra: dict[str, Any],
                  part: slice) -> np.ndarray:
    return np.asarray(function(**{source_name: source[part]}, **extra), dtype=np.float64)

"""Embeddings and data-quality metrics: computed once per run, kept in the store, read by every round."""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner.errors import ConfigError
from runner.plugins import instantiate_node

log = logging.getLogger("runner")
EMBEDDING_INPUTS = frozenset({"embeddings", "labeled_embeddings"})


def metric_functions(metrics: dict) -> dict[str, Any]:
    """The configured metric functions by name (Hydra partials), checked against ``metrics.names``."""
    functions = metrics.get("functions") or {}
    found = {}
    for name in metrics.get("names") or []:
        if name not in functions:
            raise ConfigError(f"metrics.names lists '{name}' but metrics.functions.{name} is not defined")
        found[name] = instantiate_node(functions[name], f"metrics.functions.{name}", _partial_=True)
        try:
            params = list(inspect.signature(found[name]).parameters)
        except ValueError as exc:  # a partial with arguments the function does not take
            raise ConfigError(f"metrics.functions.{name}: {exc}") from None
        if not params or params[0] not in ("images", "embeddings"):
            raise ConfigError(f"metrics.functions.{name}: the first parameter must be 'images' or 'embeddings'")
    return found


@dataclass
class Embeddings:
    """Where item embeddings come from: ``pixels`` (PCA of the pixels, computed once), ``clip`` (a pretrained
    encoder from local weights, computed once) or ``model`` (the current model's ``embed``; pixels stand in while
    no model exists yet). The once-computed embeddings are stored under ``embeddings/static``."""

    name: str
    n_components: int
    seed: int
    needs_static: bool
    weights_path: str | None = None
    images: np.ndarray | None = None
    load: Any = None  # () -> stored pixel embeddings, bound to the run store
    _pixels: np.ndarray | None = field(default=None, repr=False)
    _warned: bool = False

    @classmethod
    def from_config(cls, config: dict, acquisition: Any) -> Embeddings:
        section = config.get("embedder") or {"name": "pixels"}
        name = section.get("name", "pixels")
        weights = section.get("weights_path")
        if name == "clip":
            from plugins.embedders.pretrained import check_available

            try:
                check_available(weights)
            except FileNotFoundError as exc:
                raise ConfigError(f"embedder.weights_path: {exc}") from None
        uses = any(EMBEDDING_INPUTS & set(f.inputs) for f in acquisition.functions())
        uses |= any(
            next(iter(inspect.signature(fn).parameters)) == "embeddings"
            for fn in metric_functions(config["metrics"]).values()
        )
        uses |= bool((config.get("filters") or {}).get("exclude_near_duplicates"))
        return cls(name, int(section.get("n_components", 50)), int(config["seed"]), uses, weights_path=weights)

    def fit_static(self, images: np.ndarray) -> np.ndarray:
        """Embeddings that do not change between rounds: pixel PCA, or the pretrained encoder's."""
        if self.name == "clip":
            from plugins.embedders.pretrained import LocalWeights

            return np.asarray(LocalWeights(self.weights_path).fit_transform(images), dtype=np.float64)
        from plugins.embedders.pixels import PixelPCA

        return PixelPCA(n_components=self.n_components, random_state=self.seed).fit_transform(images)

    def static(self) -> np.ndarray | None:
        """The once-computed embeddings of every item (pixel PCA or pretrained)."""
        if self._pixels is None and self.load is not None:
            self._pixels = self.load()
        return self._pixels

    def of(self, indices: np.ndarray, model: Any | None) -> np.ndarray:
        if self.name == "model":
            if model is not None and hasattr(model, "embed"):
                return np.asarray(model.embed(self.images[indices]), dtype=np.float64)
            if not self._warned:
                log.info("embedder=model: no trained model yet, using pixel embeddings for this round")
                self._warned = True
        pixels = self.static()
        if pixels is None:
            raise RuntimeError("embeddings were needed but not computed at the embed stage")
        return pixels[indices]


def compute_metrics(metrics: dict, data: Any, pixel_embeddings: np.ndarray | None, unlabeled: np.ndarray,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One float column per configured metric over every item (NaN where it could not be computed).

    A metric whose ``metrics.scope.NAME`` is ``unlabeled`` (Image Diversity) is computed over the unlabelled items
    only. A failing metric, or failing items, are reported and left NaN: a metric never stops a run.
    """
    n = len(data.item_ids)
    scopes = metrics.get("scope") or {}
    columns = {}
    for name, function in metric_functions(metrics).items():
        scope = unlabeled if scopes.get(name) == "unlabeled" else np.arange(n)
        params = inspect.signature(function).parameters
        first = next(iter(params))
        source = data.images if first == "images" else pixel_embeddings
        kwargs: dict[str, Any] = {first: source[scope]}
        if "n_classes" in params:
            kwargs["n_classes"] = data.n_classes
        if "rng" in params:
            kwargs["rng"] = rng
        column = np.full(n, np.nan)
        try:
            values = np.asarray(function(**kwargs), dtype=np.float64)
            if values.shape != (len(scope),):
                raise ValueError(f"returned shape {values.shape}, expected ({len(scope)},)")
            column[scope] = values
        except Exception as exc:  # a metric's own bug must not end the run; it is reported instead
            log.warning(f"metric '{name}' could not be computed: {exc}")
            columns[name] = column
            continue
        failed = scope[np.isnan(column[scope])]
        if len(failed):
            shown = ", ".join(str(data.item_ids[i]) for i in failed[:5])
            log.warning(f"metric '{name}': {len(failed)} items could not be scored (first: {shown})")
        columns[name] = column
    return columns

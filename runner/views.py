"""A typed, read-only view of one round: what evaluation, filters and acquisition functions may read.

Per-item inputs (probabilities, MC samples, embeddings) are computed on demand for the items asked for and checked
against the model contract where they are produced, so a broken model plugin is named at the stage boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugins.acquisition.protocol import PastRound
from plugins.neighbours import NeighbourSearch
from plugins.protocols import PredictsClasses, SamplesPredictions
from runner import contracts
from runner.acquire import Acquisition
from runner.errors import ConfigError, PluginError
from runner.quality import Embeddings


@dataclass(frozen=True)
class Predictor:
    """The round's model over the project's images: probabilities and MC samples of any items, checked.

    Items are given to the model ``chunk_size`` at a time and the answers assembled, so that whatever the
    strategy, only one chunk of images (and of the model's own conversions of them) is in memory at once.
    Holds nothing tied to this process (no store), so a shard of the score stage can run it as a Ray task.
    """

    model: Any | None
    images: Any
    n_classes: int
    model_label: str
    mc_samples: int | None = None
    chunk_size: int = 8192

    def chunks(self, indices: np.ndarray) -> list[np.ndarray]:
        return [indices[start:start + self.chunk_size] for start in range(0, len(indices), self.chunk_size)]

    def probs(self, indices: np.ndarray) -> np.ndarray | None:
        model = self.model
        if model is None:
            return None
        out = np.empty((len(indices), self.n_classes), dtype=np.float64)
        for part, rows in self._parts(indices):
            out[part] = contracts.check_probs(
                model.predict_proba(self.images[rows]), len(rows), self.n_classes, self.model_label)
        return out

    def predictions(self, indices: np.ndarray) -> np.ndarray | None:
        """Predicted classes: the model's own ``predict`` where it has one, else the most probable class."""
        model = self.model
        if model is None:
            return None
        if not isinstance(model, PredictsClasses):
            probs = self.probs(indices)
            return None if probs is None else probs.argmax(axis=1)
        out = np.empty(len(indices), dtype=np.int64)
        for part, rows in self._parts(indices):
            out[part] = contracts.check_predictions(
                model.predict(self.images[rows]), len(rows), self.n_classes, self.model_label)
        return out

    def samples(self, indices: np.ndarray) -> np.ndarray:
        model = self.model
        if not isinstance(model, SamplesPredictions) or not self.mc_samples:
            raise PluginError(f"{self.model_label}: MC samples were asked for but the model cannot give them")
        t = int(self.mc_samples)
        out = np.empty((t, len(indices), self.n_classes), dtype=np.float64)
        for part, rows in self._parts(indices):
            out[:, part] = contracts.check_samples(
                model.predict_proba_samples(self.images[rows], t), t, len(rows), self.n_classes, self.model_label)
        return out

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one item as the model is given it (``images[0]``)."""
        return tuple(np.shape(self.images[0]))

    def features(self, indices: np.ndarray) -> np.ndarray:
        """What the model is given for ``indices``, each item flattened to one float32 row, (n, d)."""
        width = int(np.prod(self.input_shape))
        out = np.empty((len(indices), width), dtype=np.float32)
        for part, rows in self._parts(indices):
            # reshape to a known width: an empty chunk cannot infer it
            out[part] = np.asarray(self.images[rows], dtype=np.float32).reshape(len(rows), width)
        return out

    def probs_of_rows(self, rows: np.ndarray) -> np.ndarray | None:
        """Class probabilities of rows shaped like :meth:`features` (perturbed copies, say), checked; None without
        a model. Each chunk is reshaped back to the model's own input shape before the model sees it."""
        model = self.model
        if model is None:
            return None
        shape = self.input_shape
        width = int(np.prod(shape))
        x = np.asarray(rows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != width:
            raise ValueError(f"predict_proba takes rows of the model's {width} input values, (m, {width}); "
                             f"got shape {x.shape}")
        out = np.empty((len(x), self.n_classes), dtype=np.float64)
        for start in range(0, len(x), self.chunk_size):
            chunk = x[start:start + self.chunk_size]
            out[start:start + len(chunk)] = contracts.check_probs(
                model.predict_proba(chunk.reshape((len(chunk), *shape))), len(chunk), self.n_classes,
                self.model_label)
        return out

    def _parts(self, indices: np.ndarray) -> list[tuple[slice, np.ndarray]]:
        """``(where in the answer, item indices)`` per chunk; one call for an empty set, as for any other."""
        if len(indices) == 0:
            return [(slice(0, 0), indices)]
        return [(slice(start, start + len(rows)), rows)
                for start, rows in zip(range(0, len(indices), self.chunk_size), self.chunks(indices), strict=True)]


@dataclass(frozen=True)
class RoundView:
    round_: int
    model: Any | None
    labeled: np.ndarray  # indices of the labelled items
    labels: np.ndarray  # their labels, same order
    images: Any
    class_names: list[str]
    model_label: str
    embedder: Embeddings
    read_metric: Callable[[str], np.ndarray | None]
    source_columns: dict[str, Any]
    read_tags: Callable[[], dict[int, set[str]]]
    read_history: Callable[[], tuple[PastRound, ...]]
    mc_samples: int | None = None
    neighbours: NeighbourSearch | None = None  # the run's shared neighbour search
    chunk_size: int = 8192  # items given to the model at once (selection.chunk_size)

    @property
    def has_model(self) -> bool:
        return self.model is not None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def predictor(self) -> Predictor:
        return Predictor(self.model, self.images, self.n_classes, self.model_label, self.mc_samples, self.chunk_size)

    def probs(self, indices: np.ndarray) -> np.ndarray | None:
        return self.predictor.probs(indices)

    def predictions(self, indices: np.ndarray) -> np.ndarray | None:
        return self.predictor.predictions(indices)

    def samples(self, indices: np.ndarray) -> np.ndarray:
        return self.predictor.samples(indices)

    def features(self, indices: np.ndarray) -> np.ndarray:
        return self.predictor.features(indices)

    def embeddings(self, indices: np.ndarray) -> np.ndarray:
        return self.embedder.of(indices, self.model, self.chunk_size)

    def metric(self, name: str) -> np.ndarray:
        values = self.read_metric(name)
        if values is None:  # the config checks make this unreachable; a store edited by hand is not trusted
            raise PluginError(f"metric '{name}' was not computed in this run")
        return values

    def item_column(self, name: str) -> np.ndarray:
        return np.asarray(self.source_columns[name])

    def tags(self) -> dict[int, set[str]]:
        return self.read_tags()

    def constants(self, rng: np.random.Generator) -> dict[str, Any]:
        """The inputs of an acquisition function that are the same for every candidate (see its protocol)."""
        return {"rng": rng, "n_classes": self.n_classes, "round": self.round_, "n_labeled": len(self.labeled),
                "neighbours": self.neighbours}

    def inputs(self, acquisition: Acquisition) -> dict[str, Callable[[np.ndarray], Any]]:
        """Getters of the other inputs an acquisition function may ask for (see its protocol)."""

        def trained(found: np.ndarray | None) -> np.ndarray:
            if found is None:  # a platform project with no labels yet (simulation refuses this config up front)
                raise ConfigError(
                    f"{acquisition.label} needs a trained model, and no item is labelled yet; label some items "
                    "first or pick a strategy that needs no labels (random, typiclust, probcover, image_diversity)"
                )
            return found

        def probs(part: np.ndarray) -> np.ndarray:
            return trained(self.probs(part))

        def predict_proba(rows: np.ndarray) -> np.ndarray:
            return trained(self.predictor.probs_of_rows(rows))

        return {
            "probs": probs,
            "samples": self.samples,
            "features": self.features,
            "predict_proba": lambda _: predict_proba,
            "embeddings": self.embeddings,
            "labeled_embeddings": lambda _: self.embeddings(self.labeled),
            "labels": lambda _: self.labels,
            "labeled_probs": lambda _: probs(self.labeled),
            "history": lambda _: self.read_history(),
            "metrics": lambda part: {name: self.metric(name)[part] for name in acquisition.metric_names},
        }

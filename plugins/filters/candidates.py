"""The candidate filter the ``filters`` config group builds: which unlabelled items may be selected this round.

Every constraint narrows the candidates; an empty or None constraint keeps everything. The filter reads what it
needs from a :class:`FilterInputs` view of the round (metric columns, tags, per-item source columns, predicted
probabilities, embeddings), so it never holds the run itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from plugins.errors import InputError
from plugins.filters.masks import has_tags, in_stages, metric_range, not_near_duplicate, predicted_class
from plugins.neighbours import NeighbourSearch

log = logging.getLogger("runner")


class FilterInputs(Protocol):
    """What a filter may read about one round (the runner provides it)."""

    labeled: np.ndarray  # indices of the labelled items
    class_names: list[str]
    neighbours: NeighbourSearch | None  # the run's shared neighbour search

    def metric(self, name: str) -> np.ndarray: ...  # a metric column over every item

    def item_column(self, name: str) -> np.ndarray: ...  # a per-item column of the source (e.g. ``stage``)

    def tags(self) -> dict[int, set[str]]: ...  # tags by item index

    def probs(self, indices: np.ndarray) -> np.ndarray | None: ...  # None while no model is trained

    def embeddings(self, indices: np.ndarray) -> np.ndarray: ...


class CandidateFilter:
    """Metric ranges, tags, workflow stages, predicted classes and near-duplicates, applied in that order."""

    def __init__(
        self,
        metrics: Mapping[str, Sequence[float | None]],
        tags: Mapping[str, Sequence[str]],
        stages: Sequence[str] | None,
        classes: Sequence[str | int] | None,
        exclude_near_duplicates: bool,
        near_duplicate_threshold: float,
    ) -> None:
        ranges = {}
        for name, bounds in (metrics or {}).items():
            if not isinstance(bounds, Sequence) or isinstance(bounds, str) or len(bounds) != 2:
                raise InputError(f"filters.metrics.{name} must be [low, high] (null for an open end)")
            ranges[str(name)] = (bounds[0], bounds[1])
        self.metric_ranges = ranges
        self.include_tags = list((tags or {}).get("include") or [])
        self.exclude_tags = list((tags or {}).get("exclude") or [])
        self.stages = None if stages is None else [str(s) for s in stages]
        self.classes = None if classes is None else list(classes)
        self.exclude_near_duplicates = bool(exclude_near_duplicates)
        self.near_duplicate_threshold = float(near_duplicate_threshold)

    # --- what the filter needs, so the runner can refuse a config before the run starts ---------------
    @property
    def metric_names(self) -> list[str]:
        return list(self.metric_ranges)

    @property
    def item_columns(self) -> list[str]:
        return [] if self.stages is None else ["stage"]

    @property
    def needs_model(self) -> bool:
        return self.classes is not None

    @property
    def needs_embeddings(self) -> bool:
        return self.exclude_near_duplicates

    @property
    def active(self) -> bool:
        return bool(
            self.metric_ranges or self.include_tags or self.exclude_tags or self.stages is not None
            or self.classes is not None or self.exclude_near_duplicates
        )

    def class_indices(self, class_names: Sequence[str]) -> list[int] | None:
        """``filters.classes`` as class indices (names or indices accepted); InputError for an unknown class."""
        if self.classes is None:
            return None
        names = [str(n) for n in class_names]
        found = []
        for value in self.classes:
            if str(value) in names:
                found.append(names.index(str(value)))
            elif isinstance(value, int) and 0 <= value < len(names):
                found.append(value)
            else:
                raise InputError(f"filters.classes: '{value}' is not a class of this project ({', '.join(names)})")
        return found

    def apply(self, candidates: np.ndarray, inputs: FilterInputs) -> np.ndarray:
        """The candidates that pass every configured filter, in their original order."""
        if not self.active or len(candidates) == 0:
            return candidates
        keep = np.ones(len(candidates), dtype=bool)
        for name, (low, high) in self.metric_ranges.items():
            keep &= metric_range(inputs.metric(name)[candidates], low, high)
        if self.include_tags or self.exclude_tags:
            tags = inputs.tags()
            keep &= has_tags([tags.get(int(i), set()) for i in candidates], self.include_tags, self.exclude_tags)
        if self.stages is not None:
            keep &= in_stages(np.asarray(inputs.item_column("stage"))[candidates], self.stages)
        if self.classes is not None:
            probs = inputs.probs(candidates)
            if probs is None:
                raise InputError("filters.classes filters by predicted class, which needs a trained model")
            keep &= predicted_class(probs, self.class_indices(inputs.class_names))
        if self.exclude_near_duplicates:
            keep &= not_near_duplicate(
                inputs.embeddings(candidates), inputs.embeddings(inputs.labeled),
                self.near_duplicate_threshold, within_candidates=True, neighbours=inputs.neighbours,
            )
        kept = candidates[keep]
        log.debug(f"filters kept {len(kept)} of {len(candidates)} candidates")
        return kept

"""The candidate filter the ``filters`` config group builds: which unlabelled items may be selected this round.

Every constraint narrows the candidates; an empty or None constraint keeps everything. The filter reads what it
needs from a :class:`~plugins.protocols.FilterInputs` view of the round (metric columns, tags, per-item source
columns, predicted probabilities, embeddings), so it never holds the run itself. What the runner may ask of it is
:class:`~plugins.protocols.CandidateScreen`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from plugins.arrays import Array
from plugins.errors import InputError
from plugins.filters.masks import has_tags, in_stages, metric_range, not_near_duplicate, predicted_class
from plugins.protocols import FilterInputs, Removal

log = logging.getLogger("runner")


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
        ranges: dict[str, tuple[float | None, float | None]] = {}
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
        return None if self.classes is None else _class_indices(self.classes, class_names)

    def apply(self, candidates: Array, inputs: FilterInputs) -> Array:
        """The candidates that pass every configured filter, in their original order."""
        return self.screen(candidates, inputs)[0]

    def screen(self, candidates: Array, inputs: FilterInputs) -> tuple[Array, list[Removal]]:
        """The candidates that pass every configured filter (in their original order), and what each filter
        removed, with why. Each filter judges every candidate, so an item two filters reject is in both."""
        if not self.active or len(candidates) == 0:
            return candidates, []
        removals: list[Removal] = []

        def judge(keep: Array, key: str, reason: str, values: Sequence[Any] | Array | None = None) -> Array:
            dropped = np.flatnonzero(~keep)
            judged = [] if values is None else [_plain(values[int(i)]) for i in dropped]
            removals.append(Removal(key, reason, candidates[dropped], judged))
            return keep

        keep = np.ones(len(candidates), dtype=bool)
        for name, (low, high) in self.metric_ranges.items():
            values = inputs.metric(name)[candidates]
            keep &= judge(metric_range(values, low, high), f"metrics.{name}", _range_reason(name, low, high), values)
        if self.include_tags or self.exclude_tags:
            tags = inputs.tags()
            held = [sorted(tags.get(int(i), set())) for i in candidates]
            keep &= judge(has_tags(held, self.include_tags, self.exclude_tags), "tags", self._tags_reason(),
                          [", ".join(t) for t in held])
        if self.stages is not None:
            stages = np.asarray(inputs.item_column("stage"))[candidates]
            keep &= judge(in_stages(stages, self.stages), "stages",
                          f"workflow stage not one of {', '.join(self.stages)}", stages)
        if self.classes is not None:
            probs = inputs.probs(candidates)
            if probs is None:
                raise InputError("filters.classes filters by predicted class, which needs a trained model")
            wanted = _class_indices(self.classes, inputs.class_names)
            predicted = [inputs.class_names[c] for c in np.asarray(probs).argmax(axis=1)]
            keep &= judge(predicted_class(probs, wanted), "classes",
                          f"predicted class not one of {', '.join(inputs.class_names[c] for c in wanted)}",
                          predicted)
        if self.exclude_near_duplicates:
            unique = not_near_duplicate(
                inputs.embeddings(candidates), inputs.embeddings(inputs.labeled),
                self.near_duplicate_threshold, within_candidates=True, neighbours=inputs.neighbours,
            )
            keep &= judge(unique, "exclude_near_duplicates",
                          f"near-duplicate (distance <= {self.near_duplicate_threshold:g}) of a labelled item or of "
                          "an earlier candidate")
        kept = candidates[keep]
        log.debug(f"filters kept {len(kept)} of {len(candidates)} candidates")
        return kept, [r for r in removals if len(r.items)]

    def _tags_reason(self) -> str:
        parts = []
        if self.exclude_tags:
            parts.append(f"tagged {' or '.join(self.exclude_tags)}")
        if self.include_tags:
            parts.append(f"tagged none of {', '.join(self.include_tags)}")
        return " or ".join(parts)


def _class_indices(classes: Sequence[str | int], class_names: Sequence[str]) -> list[int]:
    names = [str(n) for n in class_names]
    found = []
    for value in classes:
        if str(value) in names:
            found.append(names.index(str(value)))
        elif isinstance(value, int) and 0 <= value < len(names):
            found.append(value)
        else:
            raise InputError(f"filters.classes: '{value}' is not a class of this project ({', '.join(names)})")
    return found


def _range_reason(name: str, low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{name} outside [{low:g}, {high:g}]"
    if low is not None:
        return f"{name} below {low:g}"
    if high is not None:
        return f"{name} above {high:g}"
    return f"{name} not computed"


def _plain(value: Any) -> Any:
    """A JSON-ready value: numpy scalars as Python ones, NaN as None."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and value != value else value

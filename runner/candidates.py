"""Which unlabelled items may be selected this round: the ``filters`` config applied to the pool."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner.errors import ConfigError

log = logging.getLogger("runner")


@dataclass
class CandidateFilter:
    metric_ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    include_tags: list[str] = field(default_factory=list)
    exclude_tags: list[str] = field(default_factory=list)
    stages: list[str] | None = None
    classes: list[int] | None = None
    exclude_near_duplicates: bool = False
    near_duplicate_threshold: float = 0.03

    @classmethod
    def from_config(cls, config: dict, data: Any) -> CandidateFilter:
        section = config.get("filters") or {}
        computed = set(config["metrics"].get("names") or [])
        ranges = {}
        for name, bounds in (section.get("metrics") or {}).items():
            if name not in computed:
                raise ConfigError(f"filters.metrics.{name}: metric '{name}' is not computed; add it to metrics.names")
            if not isinstance(bounds, list | tuple) or len(bounds) != 2:
                raise ConfigError(f"filters.metrics.{name} must be [low, high] (null for an open end)")
            ranges[name] = (bounds[0], bounds[1])
        stages = section.get("stages")
        if stages is not None and "stage" not in data.extra:
            raise ConfigError("filters.stages needs a source with workflow stages (e.g. project=encord)")
        classes = section.get("classes")
        if classes is not None:
            classes = [_class_index(c, data.class_names) for c in classes]
        tags = section.get("tags") or {}
        return cls(
            metric_ranges=ranges,
            include_tags=list(tags.get("include") or []),
            exclude_tags=list(tags.get("exclude") or []),
            stages=None if stages is None else list(stages),
            classes=classes,
            exclude_near_duplicates=bool(section.get("exclude_near_duplicates", False)),
            near_duplicate_threshold=float(section.get("near_duplicate_threshold", 0.03)),
        )

    @property
    def active(self) -> bool:
        return bool(
            self.metric_ranges or self.include_tags or self.exclude_tags or self.stages is not None
            or self.classes is not None or self.exclude_near_duplicates
        )

    def apply(self, candidates: np.ndarray, model: Any, run: Any) -> np.ndarray:
        """The candidates that pass every configured filter, in their original order."""
        if not self.active or len(candidates) == 0:
            return candidates
        from plugins import filters

        keep = np.ones(len(candidates), dtype=bool)
        for name, (low, high) in self.metric_ranges.items():
            keep &= filters.metric_range(run.metric_column(name)[candidates], low, high)
        if self.include_tags or self.exclude_tags:
            tags = run.store.tags()
            item_tags = [tags.get(int(i), set()) for i in candidates]
            keep &= filters.has_tags(item_tags, self.include_tags, self.exclude_tags)
        if self.stages is not None:
            keep &= filters.in_stages(np.asarray(run.data.extra["stage"])[candidates], self.stages)
        if self.classes is not None:
            if model is None:
                raise ConfigError("filters.classes filters by predicted class, which needs loop.initial_labels > 0")
            keep &= filters.predicted_class(run.predict_probs(model, candidates), self.classes)
        if self.exclude_near_duplicates:
            labeled, _ = run.store.labeled()
            keep &= filters.not_near_duplicate(
                run.embeddings.of(candidates, model), run.embeddings.of(labeled, model),
                self.near_duplicate_threshold, within_candidates=True,
            )
        kept = candidates[keep]
        log.debug(f"filters kept {len(kept)} of {len(candidates)} candidates")
        return kept


def _class_index(value: Any, names: list[str]) -> int:
    if str(value) in names:
        return names.index(str(value))
    if isinstance(value, int) and 0 <= value < len(names):
        return value
    raise ConfigError(f"filters.classes: '{value}' is not a class of this project ({', '.join(names)})")

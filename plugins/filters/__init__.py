"""Candidate filters: pure functions returning a boolean keep-mask (True = keep) over the candidate arrays."""

from plugins.filters.masks import has_tags, in_stages, metric_range, not_near_duplicate, predicted_class

__all__ = ["has_tags", "in_stages", "metric_range", "not_near_duplicate", "predicted_class"]

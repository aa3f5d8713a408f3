"""Weighted rank sum: one score from several acquisition functions and metrics, on one scale.

Each column becomes normalised ranks in [0, 1], so columns on unrelated scales (entropy in nats, a diversity
position, a brightness) weigh only by their weights. Ranks rather than values also make the sum blind to
outliers. :class:`WeightedRankSum` is an acquisition function like any other: it asks for the union of what its
components ask for (see ``plugins.acquisition.protocol``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import rankdata

from plugins.acquisition.combine import Component, metric_names, union_inputs
from plugins.arrays import Array


def normalised_ranks(values: Array) -> Array:
    """(rank - 1) / (n - 1) with average ranks for ties, higher value = higher rank; 0.5 when n = 1."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"a score column must be 1-D, got shape {v.shape}")
    if np.isnan(v).any():
        raise ValueError("a score column holds NaN")
    if len(v) == 1:
        return np.full(1, 0.5)
    return np.asarray((rankdata(v, method="average") - 1.0) / max(len(v) - 1, 1))


def rank_sum(columns: dict[str, Array], weights: dict[str, float]) -> Array:
    """sum over names of weights[name] * normalised_ranks(columns[name]); higher = label first.

    A negative weight makes its column a penalty.

    Every column needs a weight and every weight a column, so a misspelt name fails instead of being ignored.
    """
    if set(columns) != set(weights):
        missing = sorted(set(columns) ^ set(weights))
        raise ValueError(f"columns and weights must name the same scores; unmatched: {', '.join(missing)}")
    if not columns:
        raise ValueError("rank_sum needs at least one column")
    lengths = {name: len(np.asarray(col)) for name, col in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"score columns differ in length: {lengths}")
    total = np.zeros(next(iter(lengths.values())))
    for name in sorted(columns):
        total += float(weights[name]) * normalised_ranks(columns[name])
    return total


def neutral_fill(values: Array) -> Array:
    """A metric column with items it could not score set to the median, so they neither win nor lose by it."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    if not missing.any():
        return values
    filled = values.copy()
    filled[missing] = np.nanmedian(values) if (~missing).any() else 0.0
    return filled


class WeightedRankSum:
    """``components``: name -> ``{weight, function}`` (an acquisition function) or ``{weight, metric}`` (a metric)."""

    def __init__(self, components: Mapping[str, Mapping[str, Any]]) -> None:
        if not components:
            raise ValueError("components: name at least one function or metric to weigh")
        self.weights: dict[str, float] = {}
        self.functions: dict[str, Component] = {}
        self.metrics: dict[str, str] = {}
        for name, spec in components.items():
            if "weight" not in spec or ("function" in spec) == ("metric" in spec):
                raise ValueError(f"components.{name} needs a weight and either a function or a metric")
            self.weights[name] = float(spec["weight"])
            if "metric" in spec:
                self.metrics[name] = str(spec["metric"])
                continue
            component = Component.of(name, spec["function"], "components")
            if component.is_batch:
                raise ValueError(f"components.{name}: a batch strategy cannot be weighted")
            self.functions[name] = component

    @property
    def inputs(self) -> tuple[str, ...]:
        return union_inputs(self.functions.values(), ["metrics"] if self.metrics else [])

    @property
    def metric_names(self) -> list[str]:
        """The metric columns weighed here, then those the functions read (a nested combination may read some)."""
        return [*self.metrics.values(), *metric_names(self.functions.values())]

    def __call__(self, **inputs: Any) -> Array:
        columns = {}
        for name, component in self.functions.items():
            columns[name] = np.asarray(component(inputs), dtype=np.float64)
        for name, metric in self.metrics.items():
            columns[name] = neutral_fill(inputs["metrics"][metric])
        return rank_sum(columns, self.weights)

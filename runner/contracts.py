"""Checks at stage boundaries: a plugin that breaks its contract is named, not trusted."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from runner.errors import PluginError

# Softmax in float32 sums to 1 within ~1e-6; anything further off is a bug, not rounding.
SUM_TOLERANCE = 1e-4


def check_probs(probs: object, n: int, n_classes: int, plugin: str) -> np.ndarray:
    arr = _array(probs, plugin, "predict_proba")
    if arr.shape != (n, n_classes):
        raise PluginError(f"{plugin}: predict_proba returned shape {arr.shape}, expected ({n}, {n_classes})")
    _check_distribution(arr, plugin, "predict_proba", axis=1)
    return arr


def check_samples(samples: object, t: int, n: int, n_classes: int, plugin: str) -> np.ndarray:
    arr = _array(samples, plugin, "predict_proba_samples")
    if arr.shape != (t, n, n_classes):
        raise PluginError(
            f"{plugin}: predict_proba_samples returned shape {arr.shape}, expected ({t}, {n}, {n_classes})"
        )
    _check_distribution(arr, plugin, "predict_proba_samples", axis=2)
    return arr


def check_predictions(predicted: object, n: int, n_classes: int, plugin: str) -> np.ndarray:
    """A model's ``predict``: one class index in ``0..n_classes-1`` per item."""
    arr = np.asarray(predicted)
    if arr.shape != (n,):
        raise PluginError(f"{plugin}: predict returned shape {arr.shape}, expected ({n},)")
    if n and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= n_classes):
        raise PluginError(f"{plugin}: predict must return class indices in 0..{n_classes - 1}")
    return arr.astype(np.int64)


def check_scores(scores: object, n: int, plugin: str) -> np.ndarray:
    arr = _array(scores, plugin, "scores")
    if arr.shape != (n,):
        raise PluginError(f"{plugin}: returned scores of shape {arr.shape}, expected ({n},)")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise PluginError(f"{plugin}: {int(bad.sum())} of {n} scores are NaN or infinite")
    return arr


def _array(value: object, plugin: str, what: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{plugin}: {what} is not a numeric array ({exc})") from None


def _check_distribution(arr: np.ndarray, plugin: str, what: str, axis: int) -> None:
    if not np.isfinite(arr).all():
        raise PluginError(f"{plugin}: {what} contains {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    if (arr < 0).any():
        raise PluginError(f"{plugin}: {what} contains negative probabilities (min {arr.min():.3g})")
    sums = arr.sum(axis=axis)
    worst = float(np.abs(sums - 1.0).max()) if sums.size else 0.0
    if worst > SUM_TOLERANCE:
        raise PluginError(f"{plugin}: {what} rows do not sum to 1 (off by up to {worst:.3g})")


def check_positions(positions: np.ndarray, budget: int, n: int, plugin: str) -> np.ndarray:
    """A batch strategy's answer: a 1-d array of at most ``budget`` distinct positions in ``0..n-1``."""
    if positions.ndim != 1 or not np.issubdtype(positions.dtype, np.integer):
        raise PluginError(f"{plugin}: must return a 1-d array of integer positions, got {positions.dtype}")
    if len(positions) > min(budget, n) or len(np.unique(positions)) != len(positions):
        raise PluginError(f"{plugin}: returned {len(positions)} positions, not {min(budget, n)} distinct ones")
    if len(positions) and (positions.min() < 0 or positions.max() >= n):
        raise PluginError(f"{plugin}: returned positions outside 0..{n - 1}")
    return positions.astype(np.int64)


def check_record(record: Mapping[str, Any], plugin: str) -> dict[str, Any]:
    """What an acquisition asked to remember of a round: a mapping that survives a JSON round trip unchanged, so
    the history a resumed run reads back from the store is the one an uninterrupted run had in memory."""
    try:
        text = json.dumps(dict(record), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{plugin}: its round record is not plain JSON ({exc})") from None
    restored: dict[str, Any] = json.loads(text)
    if restored != dict(record):
        raise PluginError(f"{plugin}: its round record changes when stored as JSON (use str keys, lists, floats)")
    return restored

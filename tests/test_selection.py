"""Top-k selection: order, ties, and equality with a full sort."""

from __future__ import annotations

import numpy as np

from plugins.selection.policies import topk


def test_topk_orders_best_first():
    assert topk(np.array([0.1, 0.9, 0.5, 0.7]), 3).tolist() == [1, 3, 2]


def test_topk_breaks_ties_by_lower_position():
    scores = np.array([0.5, 1.0, 0.5, 0.5, 0.2])
    assert topk(scores, 3).tolist() == [1, 0, 2]
    assert topk(scores, 4).tolist() == [1, 0, 2, 3]


def test_topk_budget_larger_than_pool_returns_everything():
    assert topk(np.array([0.3, 0.1, 0.2]), 10).tolist() == [0, 2, 1]


def test_topk_matches_a_stable_full_sort_on_random_data_with_ties():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 50, size=5000).astype(float)  # many ties
    expected = np.argsort(-scores, kind="stable")[:123]
    assert topk(scores, 123).tolist() == expected.tolist()

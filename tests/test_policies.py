"""Batch policies on tiny tables with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.selection.policies import class_balanced, stratified, topk, topk_cost

# positions:        0    1    2    3    4    5    6
SCORES = np.array([0.5, 0.9, 0.8, 0.1, 0.7, 0.3, 0.6])
PREDICTED = np.array([0, 0, 1, 1, 0, 2, 0])
# Class 0 best-first: 1, 4, 6, 0; class 1: 2, 3; class 2: 5.
# Rounds of the round robin: {1, 2, 5}, {4, 3}, {6}, {0}.


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (1, [1]),
        (3, [1, 2, 5]),
        (4, [1, 2, 4, 5]),  # round 2 is cut: its best (4, score 0.7) beats 3 (0.1)
        (5, [1, 2, 4, 5, 3]),
        (6, [1, 2, 4, 6, 5, 3]),  # class 2 ran out in round 2; class 0 takes the seat
        (10, [1, 2, 4, 6, 0, 5, 3]),
    ],
)
def test_class_balanced_round_robin(budget, expected):
    assert class_balanced(SCORES, budget, PREDICTED).tolist() == expected


def test_class_balanced_with_one_class_is_topk_and_labels_can_be_strings():
    rng = np.random.default_rng(0)
    scores = rng.random(50)
    assert class_balanced(scores, 7, np.zeros(50)).tolist() == topk(scores, 7).tolist()
    names = np.array(["cat", "cat", "dog", "dog", "cat", "eel", "cat"])
    assert class_balanced(SCORES, 4, names).tolist() == [1, 2, 4, 5]


def test_stratified_largest_remainder():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    strata = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 2)
    # Budget 4 over sizes 5/3/2: exact 2.0/1.2/0.8 -> floors 2/1/0, the seat left goes to c (0.8).
    assert stratified(scores, 4, strata).tolist() == [0, 1, 5, 8]
    # Budget 5: exact 2.5/1.5/1.0 -> floors 2/1/1, a and b tie on 0.5 and a sorts first.
    assert stratified(scores, 5, strata).tolist() == [0, 1, 2, 5, 8]
    # Budget 1: exact 0.5/0.3/0.2 -> a alone.
    assert stratified(scores, 1, strata).tolist() == [0]
    assert stratified(scores, 20, strata).tolist() == list(range(10))


def test_stratified_picks_best_inside_each_stratum():
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7])
    strata = np.array([0, 0, 0, 1, 1, 1])
    # Three each; budget 2 -> one each: the best of stratum 0 is 1 (0.9), of stratum 1 is 3 (0.8).
    assert stratified(scores, 2, strata).tolist() == [1, 3]


def test_topk_cost_skips_what_does_not_fit_and_goes_on():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    cost = np.array([4.0, 3.0, 2.0, 1.0, 5.0])
    # Budget 6: take 0 (2 left), skip 1 (3 > 2), take 2 (0 left), nothing else fits.
    assert topk_cost(scores, 6, cost).tolist() == [0, 2]
    # Budget 8: 0 (4 left), 1 (1 left), skip 2, 3 (0 left).
    assert topk_cost(scores, 8, cost).tolist() == [0, 1, 3]
    assert topk_cost(scores, 100, cost).tolist() == [0, 1, 2, 3, 4]
    assert topk_cost(scores, 0.5, cost).tolist() == []


def test_topk_cost_zero_bad_and_fractional_costs():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert topk_cost(scores, 0, np.array([1.0, 0.0, np.nan, -1.0])).tolist() == [1]
    # 0.1 + 0.2 exceeds 0.3 in binary floating point; the tolerance lets it fit.
    assert topk_cost(scores[:3], 0.3, np.array([0.1, 0.2, 0.1])).tolist() == [0, 1]
    with pytest.raises(ValueError):
        topk_cost(scores, 1, np.ones(3))


def test_ties_go_to_the_lower_position_and_nan_ranks_last():
    scores = np.array([np.nan, 0.5, 0.5, 0.9, 0.5])
    groups = np.array([0, 0, 1, 1, 1])
    assert class_balanced(scores, 5, groups).tolist() == [3, 1, 2, 4, 0]
    assert stratified(scores, 4, groups).tolist() == [3, 1, 2, 0]
    assert topk_cost(scores, 3, np.ones(5)).tolist() == [3, 1, 2]


@pytest.mark.parametrize("policy", ["class_balanced", "stratified", "topk_cost"])
def test_policies_return_distinct_deterministic_best_first_positions(policy):
    rng = np.random.default_rng(11)
    scores = np.round(rng.random(500), 2)  # rounding makes many ties
    groups = rng.integers(0, 7, 500)
    cost = rng.integers(1, 5, 500).astype(float)
    run = {
        "class_balanced": lambda: class_balanced(scores, 60, groups),
        "stratified": lambda: stratified(scores, 60, groups),
        "topk_cost": lambda: topk_cost(scores, 150, cost),
    }[policy]
    chosen = run()
    np.testing.assert_array_equal(chosen, run())
    assert len(np.unique(chosen)) == len(chosen) and chosen.dtype == np.int64
    key = list(zip(-scores[chosen], chosen, strict=True))
    assert key == sorted(key)
    if policy == "topk_cost":
        assert cost[chosen].sum() <= 150
    else:
        assert len(chosen) == 60


def test_empty_and_zero_budgets():
    assert class_balanced(np.zeros(0), 3, np.zeros(0)).tolist() == []
    assert stratified(SCORES, 0, PREDICTED).tolist() == []
    assert topk_cost(np.zeros(0), 3, np.zeros(0)).tolist() == []


def reference_class_balanced(scores, budget, groups):
    """class_balanced written out with plain sorts: best-first by (score desc, position), round robin by group."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    position = {item: p for p, item in enumerate(order)}
    seen, turn = {}, {}
    for item in order:
        turn[item] = seen.get(groups[item], 0)
        seen[groups[item]] = turn[item] + 1
    picked = sorted(order, key=lambda i: (turn[i], position[i]))[:budget]
    return sorted(picked, key=position.get)


@pytest.mark.parametrize(
    "scores",
    [
        np.full(300, 0.25),  # uniform scores: every item ties
        np.random.default_rng(5).integers(0, 21, 300) / 20,  # variation ratios with T = 20: 21 values
        np.array([0.0, -0.0] * 150),  # margins of exactly tied classes come out as -0.0
    ],
    ids=["uniform", "discrete", "signed-zeros"],
)
def test_exact_ties_are_broken_by_item_position(scores):
    """Store index is item order, so on every machine an exact tie goes to the item listed first."""
    groups = np.random.default_rng(6).integers(0, 4, len(scores))
    expected_topk = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:40]
    assert topk(scores, 40).tolist() == expected_topk
    assert class_balanced(scores, 40, groups).tolist() == reference_class_balanced(scores.tolist(), 40, groups)
    assert topk_cost(scores, 40, np.ones(len(scores))).tolist() == expected_topk
    # One stratum is plain top-k.
    assert stratified(scores, 40, np.zeros(len(scores))).tolist() == expected_topk

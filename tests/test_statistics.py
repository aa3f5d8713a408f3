"""runner.statistics on plain values, against numbers worked out by hand (tests/test_report.py has the trapezoid,
labels to target and mean/std basics; these are the rest)."""

from __future__ import annotations

import math

import pytest

from runner.statistics import (
    area_under_curve,
    curve_metrics,
    labels_to_target,
    mean_curve,
    mean_std,
    mean_tags,
    paired_curve_difference,
    paired_difference,
)


def test_area_under_curve_sorts_by_labelled_count_and_handles_one_count() -> None:
    # Given out of order: sorted to (10, 0.5), (20, 0.7), (30, 0.9), so (6 + 8) / 20.
    assert area_under_curve([(30, 0.9), (10, 0.5), (20, 0.7)]) == pytest.approx(0.7)
    # Every point at one count: no range to divide by, so the last point's accuracy after sorting.
    assert area_under_curve([(10, 0.6), (10, 0.4)]) == 0.6
    assert isinstance(area_under_curve([(10, 1)]), float)


def test_labels_to_target_is_the_first_in_round_order_and_counts_equality() -> None:
    assert labels_to_target([(10, 0.9)], 0.9) == 10  # reaching the target exactly counts
    assert labels_to_target([(30, 0.95), (20, 0.9)], 0.9) == 30  # round order, not the fewest labels
    assert labels_to_target([], 0.5) is None


def test_curve_metrics() -> None:
    # Final 0.9; AULC 10 * (0.5 + 0.9) / 2 / 10 = 0.7; 0.9 first reached at 20.
    metrics = curve_metrics([(10, 0.5), (20, 0.9)], 0.9)
    assert metrics["final_accuracy"] == 0.9
    assert metrics["aulc"] == pytest.approx(0.7)
    assert metrics["labels_to_target"] == 20
    assert curve_metrics([], 0.9) == {"final_accuracy": None, "aulc": None, "labels_to_target": None}


def test_mean_std_of_none_and_two_values() -> None:
    assert mean_std([]) == {"n": 0, "mean": None, "std": None}
    # Mean 3; deviations -1 and 1; sample variance (1 + 1) / (2 - 1) = 2.
    assert mean_std([2.0, 4.0]) == {"n": 2, "mean": 3.0, "std": pytest.approx(math.sqrt(2))}


def test_mean_curve_averages_over_the_runs_evaluated_at_each_count() -> None:
    curve = mean_curve([[(10, 0.5), (20, 0.7)], [(10, 0.7), (30, 0.9)]])
    assert [p["n_labeled"] for p in curve] == [10, 20, 30]
    # At 10 both runs: mean 0.6, deviations -0.1 and 0.1, so std sqrt(0.02 / 1); at 20 and 30 one run each.
    assert curve[0]["n"] == 2
    assert curve[0]["mean"] == pytest.approx(0.6)
    assert curve[0]["std"] == pytest.approx(math.sqrt(0.02))
    assert curve[1] == {"n_labeled": 20, "n": 1, "mean": 0.7, "std": None}
    assert curve[2] == {"n_labeled": 30, "n": 1, "mean": 0.9, "std": None}
    assert mean_curve([]) == []


def test_mean_tags_counts_a_missing_tag_as_zero() -> None:
    # a: (2 + 6) / 2; b: (4 + 0) / 2; names in sorted order.
    tags = mean_tags([{"b": 4, "a": 2}, {"a": 6}])
    assert tags == {"a": 4.0, "b": 2.0}
    assert list(tags) == ["a", "b"]
    assert mean_tags([]) == {}


def test_paired_difference_uses_only_seeds_with_a_value_on_both_sides() -> None:
    # Seed 2 has no baseline, seed 3 no value of its own, seed 4 only a baseline: 0.9 - 0.7 and 0.8 - 0.5 remain.
    diff = paired_difference({1: 0.8, 0: 0.9, 2: 0.7, 3: None}, {0: 0.7, 1: 0.5, 3: 0.6, 4: 0.1})
    assert diff["seeds"] == [0, 1]
    assert diff["per_seed"] == pytest.approx([0.2, 0.3])
    assert diff["n"] == 2
    assert diff["mean"] == pytest.approx(0.25)
    assert diff["std"] == pytest.approx(math.sqrt(2 * 0.05**2))  # deviations -0.05 and 0.05, n - 1 = 1
    # Labelled counts stay whole numbers per seed: 120 - 240 and 200 - 300; mean -110, std sqrt((100 + 100) / 1).
    counts = paired_difference({0: 120, 1: 200}, {0: 240, 1: 300})
    assert counts["per_seed"] == [-120, -100] and all(isinstance(d, int) for d in counts["per_seed"])
    assert counts["mean"] == -110.0
    assert counts["std"] == pytest.approx(math.sqrt(200))
    assert paired_difference({0: 0.5}, {1: 0.5}) == {"seeds": [], "per_seed": [], "n": 0, "mean": None, "std": None}


def test_paired_curve_difference_pairs_each_count_by_seed() -> None:
    mine = {0: [(10, 0.5), (20, 0.8)], 1: [(10, 0.6), (20, 0.9), (30, 0.95)]}
    theirs = {0: [(10, 0.4), (20, 0.6)], 1: [(10, 0.6), (30, 0.9)], 2: [(10, 0.1)]}
    curve = paired_curve_difference(mine, theirs)
    # At 10: seeds 0 and 1, 0.1 and 0.0; at 20: seed 0 only (seed 1's random has no 20), 0.2; at 30: seed 1, 0.05.
    # Seed 2 has no curve of its own, so it is left out.
    assert [p["n_labeled"] for p in curve] == [10, 20, 30]
    assert [p["n"] for p in curve] == [2, 1, 1]
    assert [p["mean"] for p in curve] == pytest.approx([0.05, 0.2, 0.05])
    assert curve[0]["std"] == pytest.approx(math.sqrt(2 * 0.05**2))
    assert curve[1]["std"] is None and curve[2]["std"] is None

"""Keep-masks on tiny tables with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.filters import has_tags, in_stages, metric_range, not_near_duplicate, predicted_class


def test_metric_range_inclusive_open_bounds_and_nan():
    v = np.array([0.05, 0.1, 0.5, 0.9, 0.95, np.nan, np.inf])
    np.testing.assert_array_equal(metric_range(v, 0.1, 0.9), [0, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(metric_range(v, None, 0.9), [1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(metric_range(v, 0.9, None), [0, 0, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(metric_range(v, None, None), [1, 1, 1, 1, 1, 0, 1])


def test_has_tags():
    tags = [{"a"}, {"b"}, set(), {"a", "c"}, None, {"a", "b"}]
    np.testing.assert_array_equal(has_tags(tags, ["a", "b"], []), [1, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(has_tags(tags, ["a", "b"], ["c"]), [1, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(has_tags(tags, ["a", "b"], [], require_all=True), [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(has_tags(tags, [], ["b"]), [1, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(has_tags(tags, None, None), [1] * 6)


def test_in_stages():
    stages = np.array(["Annotate", "Review", "Complete", "Annotate"])
    np.testing.assert_array_equal(in_stages(stages, ["Annotate"]), [1, 0, 0, 1])
    np.testing.assert_array_equal(in_stages(stages, "Review"), [0, 1, 0, 0])
    np.testing.assert_array_equal(in_stages(stages, ["Review", "Complete"]), [0, 1, 1, 0])
    np.testing.assert_array_equal(in_stages(stages, None), [1, 1, 1, 1])
    np.testing.assert_array_equal(in_stages(stages, []), [0, 0, 0, 0])


def test_predicted_class():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.4, 0.4, 0.2], [np.nan, 0.5, 0.5]])
    np.testing.assert_array_equal(predicted_class(probs, [0]), [1, 0, 1, 0])  # the tie goes to class 0
    np.testing.assert_array_equal(predicted_class(probs, [1]), [0, 0, 0, 0])
    np.testing.assert_array_equal(predicted_class(probs, [1, 2]), [0, 1, 0, 0])
    np.testing.assert_array_equal(predicted_class(probs, None), [1, 1, 1, 1])
    with pytest.raises(ValueError):
        predicted_class(np.ones(3), [0])


def at(degrees: float, length: float = 1.0) -> list[float]:
    radians = np.deg2rad(degrees)
    return [length * np.cos(radians), length * np.sin(radians)]


def test_not_near_duplicate_by_hand():
    # Chord between unit vectors t degrees apart: 2 sin(t/2). 0.5 deg -> 0.0087, 1.5 deg -> 0.0262,
    # 2.5 deg -> 0.0436, 3 deg -> 0.0524; the threshold is 0.03.
    reference = np.array([at(0)])
    candidates = np.array([at(0.5, 7.0), at(10), at(10.5), at(11.5), at(13, 0.2), [np.nan, 1.0]])
    # Only the first is within 0.03 of the reference (lengths do not matter after normalisation).
    np.testing.assert_array_equal(not_near_duplicate(candidates, reference, 0.03), [0, 1, 1, 1, 1, 1])
    # Greedy among candidates: 10.5 is near the kept 10; 11.5 is 1.5 deg from the kept 10 (1 deg from the
    # dropped 10.5); 13 is 3 deg from 10 and 1.5 deg only from the dropped 11.5, so it stays.
    np.testing.assert_array_equal(
        not_near_duplicate(candidates, reference, 0.03, within_candidates=True), [0, 1, 0, 0, 1, 1]
    )
    np.testing.assert_array_equal(
        not_near_duplicate(candidates, None, 0.03, within_candidates=True), [1, 1, 0, 0, 1, 1]
    )
    np.testing.assert_array_equal(not_near_duplicate(candidates, reference, 0.005), [1] * 6)
    np.testing.assert_array_equal(not_near_duplicate(candidates, np.zeros((0, 2)), 0.03), [1] * 6)


def test_exact_duplicates_with_zero_threshold():
    candidates = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 4.0], [2.0, 1.0]])
    np.testing.assert_array_equal(
        not_near_duplicate(candidates, None, 0.0, within_candidates=True), [1, 0, 0, 1]
    )


def test_greedy_deduplication_matches_brute_force():
    rng = np.random.default_rng(5)
    candidates = rng.normal(size=(300, 3))
    reference = rng.normal(size=(40, 3))
    threshold = 0.2
    unit = candidates / np.linalg.norm(candidates, axis=1, keepdims=True)
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    expected = np.linalg.norm(unit[:, None] - ref[None], axis=2).min(axis=1) > threshold
    for i in range(len(unit)):
        if expected[i]:
            earlier = np.flatnonzero(expected[:i])
            if (np.linalg.norm(unit[earlier] - unit[i], axis=1) <= threshold).any():
                expected[i] = False
    got = not_near_duplicate(candidates, reference, threshold, within_candidates=True)
    np.testing.assert_array_equal(got, expected)
    assert 0 < got.sum() < len(got)

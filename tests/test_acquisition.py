"""Acquisition scores against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plugins.acquisition.bayesian import bald, mean_std, variation_ratios
from plugins.acquisition.random import uniform
from plugins.acquisition.uncertainty import entropy, least_confidence, margin, variance

PROBS = np.array(
    [
        [1.0, 0.0, 0.0],  # one-hot: certain
        [1 / 3, 1 / 3, 1 / 3],  # uniform: maximally unsure
        [0.5, 0.5, 0.0],  # a tie between two classes
        [0.7, 0.2, 0.1],
    ]
)


def test_entropy_by_hand():
    expected = [0.0, math.log(3), math.log(2), -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))]
    np.testing.assert_allclose(entropy(PROBS), expected, rtol=1e-12, atol=1e-15)


def test_entropy_treats_zero_probabilities_as_zero_contribution():
    scores = entropy(np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert np.all(np.isfinite(scores)) and np.all(scores == 0.0)


def test_least_confidence_by_hand():
    np.testing.assert_allclose(least_confidence(PROBS), [0.0, 2 / 3, 0.5, 0.3], atol=1e-12)


def test_margin_is_negated_gap_between_top_two():
    # gaps: 1.0, 0.0, 0.0 (tie), 0.5 -> scores are their negatives, so the ties rank first
    np.testing.assert_allclose(margin(PROBS), [-1.0, 0.0, 0.0, -0.5], atol=1e-12)


def test_margin_with_one_class_is_zero():
    assert margin(np.ones((3, 1))).tolist() == [0.0, 0.0, 0.0]


def test_variance_is_negated_population_variance():
    # one-hot over 3 classes: mean 1/3, var = ((2/3)^2 + 2*(1/3)^2) / 3 = 2/9
    # [0.7, 0.2, 0.1]: mean 1/3, var = ((11/30)^2 + (4/30)^2 + (7/30)^2) / 3 = 186/2700
    np.testing.assert_allclose(variance(PROBS), [-2 / 9, 0.0, -1 / 18, -186 / 2700], atol=1e-12)


def test_orderings_agree_on_certain_versus_uniform():
    for fn in (entropy, least_confidence, margin, variance):
        scores = fn(PROBS)
        assert scores[1] > scores[3] > scores[0], fn.__name__


def test_bald_is_zero_when_all_samples_agree():
    samples = np.repeat(PROBS[None], 5, axis=0)
    np.testing.assert_allclose(bald(samples), 0.0, atol=1e-12)


def test_bald_by_hand_for_two_disagreeing_certain_samples():
    # sample 1 says class 0 for sure, sample 2 says class 1: mean is (0.5, 0.5) -> H = log 2; each sample H = 0
    samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    np.testing.assert_allclose(bald(samples), [math.log(2)], rtol=1e-12)


def test_variation_ratios_by_hand():
    # item 0: votes 0, 0, 1, 0 -> modal count 3 of 4 -> 0.25; item 1: all agree -> 0
    samples = np.array(
        [
            [[0.9, 0.1], [0.2, 0.8]],
            [[0.8, 0.2], [0.1, 0.9]],
            [[0.4, 0.6], [0.3, 0.7]],
            [[0.6, 0.4], [0.4, 0.6]],
        ]
    )
    np.testing.assert_allclose(variation_ratios(samples), [0.25, 0.0])


def test_mean_std_by_hand():
    # item 0: p[0] over samples = (1, 0) -> std 0.5; p[1] likewise -> mean over classes 0.5; item 1 agrees -> 0
    samples = np.array([[[1.0, 0.0], [0.3, 0.7]], [[0.0, 1.0], [0.3, 0.7]]])
    np.testing.assert_allclose(mean_std(samples), [0.5, 0.0], atol=1e-12)


def test_random_is_seeded_and_uniform_in_unit_interval():
    a = uniform(1000, np.random.default_rng(7))
    b = uniform(1000, np.random.default_rng(7))
    assert np.array_equal(a, b)
    assert a.shape == (1000,) and a.min() >= 0.0 and a.max() < 1.0
    assert not np.array_equal(a, uniform(1000, np.random.default_rng(8)))


@pytest.mark.parametrize("fn", [entropy, least_confidence, margin, variance])
def test_scores_are_one_float_per_item(fn):
    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=57)
    scores = fn(probs)
    assert scores.shape == (57,) and scores.dtype == np.float64

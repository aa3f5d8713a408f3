"""DropQuery: flip counts, threshold and picks by hand; the runner's `features` and `predict_proba` inputs; a run."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from plugins.acquisition.dropquery import (
    _all_then_random,
    closest_to_centres,
    dropquery,
    flip_counts,
    flip_threshold,
)
from runner.acquire import Acquisition
from runner.errors import ConfigError, PluginError
from runner.views import Predictor, RoundView
from tests.conftest import run_in_process
from tests.test_prioritize import selected_ids, table


def three_bands(rows: np.ndarray) -> np.ndarray:
    """A linear 3-class model that reads only feature 0: class 0 below 0.3, class 1 up to 0.7, class 2 above.

    With dropout 0.5 a feature is either doubled or zeroed, so an item with x0 in (0.35, 0.7) changes class under
    every mask (to 2 when kept, to 0 when dropped) and one with x0 <= 0.15 under none (0 and 2 x0 are class 0).
    """
    x0 = np.asarray(rows, dtype=np.float64)[:, 0]
    logits = np.stack([-10 * x0, np.full_like(x0, -3.0), 10 * x0 - 10], axis=1)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def on_circle(x0: float, angle: float) -> list[float]:
    # Every row has the same norm, so normalising the rows keeps their geometry: k-means sees the angles.
    return [x0, 2 * np.cos(angle), 2 * np.sin(angle)]


SMALL = [on_circle(0.5, a) for a in (-0.1, 0.0, 0.1)]  # positions 2, 3, 4: always flip, middle 3
LARGE = [on_circle(0.5, np.pi + a) for a in (-0.2, -0.1, 0.0, 0.1, 0.2)]  # positions 7..11: always flip, middle 9
STABLE = [on_circle(0.1, a) for a in (0.5, 1.0, 1.5, 2.0)]  # positions 0, 1, 5, 6: never flip
POOL = np.array(STABLE[:2] + SMALL + STABLE[2:] + LARGE, dtype=np.float32)
UNCERTAIN = [2, 3, 4, 7, 8, 9, 10, 11]


def pick(budget: int, seed: int = 0, **settings) -> list[int]:
    return dropquery(POOL, three_bands(POOL), three_bands, budget, np.random.default_rng(seed), dropout=0.5,
                     **settings).tolist()


# --- by hand -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 5, 100])
@pytest.mark.parametrize("passes", [1, 3, 4])
def test_flip_counts_by_hand(chunk_size, passes):
    predicted = three_bands(POOL).argmax(axis=1)
    assert predicted.tolist() == [0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1]
    flips = flip_counts(POOL, predicted, three_bands, np.random.default_rng(7), 0.5, passes, chunk_size)
    assert flips.tolist() == [passes if i in UNCERTAIN else 0 for i in range(len(POOL))]


def test_no_dropout_changes_nothing():
    predicted = three_bands(POOL).argmax(axis=1)
    assert flip_counts(POOL, predicted, three_bands, np.random.default_rng(0), 0.0, 3).tolist() == [0] * len(POOL)


def test_flip_threshold_by_hand():
    flips = np.array([3, 3, 2, 1, 0, 0, 0])  # more than 1 flip: 3 items; more than 0: 4
    assert flip_threshold(flips, 3, 0) == 1  # floor(3 / 2): most of the passes
    assert flip_threshold(flips, 3, 3) == 1
    assert flip_threshold(flips, 3, 4) == 0  # too few above 1: lowered
    assert flip_threshold(flips, 3, 100) == 0  # never below 0
    assert flip_threshold(np.array([4, 3, 0]), 4, 0) == 2  # even M: strictly more than half
    assert flip_threshold(np.array([4, 3, 2, 0]), 4, 2) == 2
    assert flip_threshold(np.array([4, 3, 2, 0]), 4, 3) == 1
    assert flip_threshold(np.array([1, 0]), 1, 5) == 0


@pytest.mark.parametrize("candidates_per_pick", [0, 25])
def test_one_pick_per_cluster_closest_to_its_centre_largest_cluster_first(candidates_per_pick):
    # The 8 candidates that flip in every pass form two clusters, of 5 and of 3 rows; the middle row of each is
    # closest to its mean. With 25 per pick the threshold drops to 0, which lets in no one else (0 flips).
    assert pick(2, candidates_per_pick=candidates_per_pick) == [9, 3]
    # one cluster of all 8: its mean points the way of the larger group, whose middle is nearest
    assert pick(1, candidates_per_pick=candidates_per_pick) == [9]


def test_budget_of_the_uncertain_set_takes_each_of_them_once():
    assert sorted(pick(8)) == UNCERTAIN


def test_budget_larger_than_the_uncertain_set_takes_all_then_fills_at_random():
    chosen = pick(10)
    assert chosen[:8] == UNCERTAIN  # all flip 3 times: lower position first
    assert len(set(chosen[8:])) == 2 and set(chosen[8:]) <= {0, 1, 5, 6}
    everything = pick(100)
    assert everything[:8] == UNCERTAIN and sorted(everything[8:]) == [0, 1, 5, 6]
    fills = {tuple(pick(10, seed=s)[8:]) for s in range(20)}
    assert len(fills) > 1  # the fill is drawn from rng


def test_all_then_random_puts_most_flips_first():
    flips = np.array([0, 2, 0, 0, 3, 0, 2, 0])
    chosen = _all_then_random(np.array([1, 4, 6]), flips, 5, np.random.default_rng(0)).tolist()
    assert chosen[:3] == [4, 1, 6]
    assert len(set(chosen[3:])) == 2 and set(chosen[3:]) <= {0, 2, 3, 5, 7}


def test_fewer_clusters_than_picks_go_round_the_clusters_again():
    # 2 distinct rows, 3 clusters asked: k-means finds 2 (of 3 and 2 rows), so after one pick from each, largest
    # first, the third is the next closest of the larger (all at distance 0: lower position first)
    x = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 2, dtype=np.float32)
    with pytest.warns(Warning, match="Number of distinct clusters"):  # scikit-learn says so
        chosen = closest_to_centres(x, 3, np.random.default_rng(0)).tolist()
    assert chosen == [0, 3, 1]


# --- the contract ----------------------------------------------------------------------------------------------


def random_pool(n: int = 300, d: int = 6, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    weights = rng.standard_normal((d, classes))

    def predict(rows: np.ndarray) -> np.ndarray:
        z = rows @ weights
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return x, predict(x), predict


@pytest.mark.parametrize("budget", [1, 7, 60, 300, 500])
def test_the_same_seed_gives_the_same_batch(budget):
    x, probs, predict = random_pool()
    first = dropquery(x, probs, predict, budget, np.random.default_rng(5))
    again = dropquery(x, probs, predict, budget, np.random.default_rng(5))
    assert first.dtype == np.int64 and first.tolist() == again.tolist()
    assert len(first) == min(budget, len(x)) == len(set(first.tolist()))
    assert ((first >= 0) & (first < len(x))).all()


def test_another_seed_gives_another_batch():
    x, probs, predict = random_pool()
    batches = {tuple(dropquery(x, probs, predict, 10, np.random.default_rng(s)).tolist()) for s in range(5)}
    assert len(batches) > 1


def test_zero_budget_and_empty_pool():
    x, probs, predict = random_pool()
    assert dropquery(x, probs, predict, 0, np.random.default_rng(0)).tolist() == []
    assert dropquery(x[:0], probs[:0], predict, 5, np.random.default_rng(0)).tolist() == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"passes": 0}, "passes must be >= 1"),
        ({"candidates_per_pick": -1}, "candidates_per_pick must be >= 0"),
        ({"chunk_size": 0}, "chunk_size must be >= 1"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    x, probs, predict = random_pool()
    with pytest.raises(ValueError, match=message):
        dropquery(x, probs, predict, 3, np.random.default_rng(0), **settings)


def test_features_and_probs_must_agree():
    x, probs, predict = random_pool()
    with pytest.raises(ValueError, match=r"features \(n, d\) and probs \(n, C\) need the same n"):
        dropquery(x, probs[:-1], predict, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"predict_proba returned shape \(3,\) for 300 rows"):
        dropquery(x, probs, lambda rows: np.ones(3), 3, np.random.default_rng(0), chunk_size=1000)


def test_the_model_sees_one_chunk_at_a_time():
    x, probs, predict = random_pool()
    sizes: list[int] = []

    def counted(rows: np.ndarray) -> np.ndarray:
        sizes.append(len(rows))
        return predict(rows)

    dropquery(x, probs, counted, 5, np.random.default_rng(0), passes=3, chunk_size=64)
    assert max(sizes) == 64 and sum(sizes) == 3 * len(x)


@pytest.mark.slow
def test_100000_candidates_of_128_features_in_bounded_memory():
    x, probs, predict = random_pool(n=100_000, d=128, classes=10)
    tracemalloc.start()
    try:
        chosen = dropquery(x, probs, predict, 100, np.random.default_rng(0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(set(chosen.tolist())) == 100
    # the perturbed copies go a chunk at a time: the peak is about one copy of the uncertain rows, not passes of all
    assert peak < 2 * x.nbytes


# --- the runner's inputs ---------------------------------------------------------------------------------------


class ImageSoftmax:
    """A softmax over flattened (8, 8) images that refuses anything else and counts what it is given."""

    def __init__(self) -> None:
        self.weights = np.random.default_rng(0).standard_normal((64, 3))
        self.calls: list[tuple[int, ...]] = []

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        assert images.ndim == 3 and images.shape[1:] == (8, 8)
        self.calls.append(images.shape)
        z = images.reshape(len(images), -1) @ self.weights
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def images(n: int = 20) -> np.ndarray:
    return np.random.default_rng(1).random((n, 8, 8), dtype=np.float32)


def test_features_are_the_models_input_flattened():
    pool = images()
    predictor = Predictor(ImageSoftmax(), pool, 3, "softmax", chunk_size=3)
    rows = predictor.features(np.array([4, 0, 7, 9, 2]))
    assert rows.dtype == np.float32 and rows.shape == (5, 64)
    np.testing.assert_array_equal(rows, pool[[4, 0, 7, 9, 2]].reshape(5, 64))
    assert predictor.features(np.zeros(0, dtype=np.int64)).shape == (0, 64)


def test_predict_proba_reshapes_rows_back_to_images_a_chunk_at_a_time():
    pool, model = images(), ImageSoftmax()
    predictor = Predictor(model, pool, 3, "softmax", chunk_size=4)
    rows = predictor.features(np.arange(10))
    np.testing.assert_allclose(predictor.probs_of_rows(rows), predictor.probs(np.arange(10)))
    model.calls.clear()
    predictor.probs_of_rows(rows * 2)
    assert model.calls == [(4, 8, 8), (4, 8, 8), (2, 8, 8)]
    assert predictor.probs_of_rows(rows[:0]).shape == (0, 3)
    with pytest.raises(ValueError, match=r"rows of the model's 64 input values, \(m, 64\); got shape \(10, 63\)"):
        predictor.probs_of_rows(rows[:, :63])


def test_predict_proba_is_checked_like_probs():
    class Negative(ImageSoftmax):
        def predict_proba(self, images: np.ndarray) -> np.ndarray:
            return -super().predict_proba(images)

    predictor = Predictor(Negative(), images(), 3, "negative")
    with pytest.raises(PluginError, match="negative: predict_proba contains negative probabilities"):
        predictor.probs_of_rows(predictor.features(np.arange(3)))


def test_the_round_view_gives_features_and_predict_proba_and_needs_a_model_for_it():
    pool = images()
    acquisition = Acquisition("dropquery", dropquery, ("features", "probs", "predict_proba", "budget", "rng"), None)

    def view(model: object) -> RoundView:
        return RoundView(round_=0, model=model, labeled=np.zeros(0, dtype=np.int64), labels=np.zeros(0),
                         images=pool, class_names=["a", "b", "c"], model_label="softmax", embedder=None,
                         read_metric=lambda name: None, source_columns={}, read_tags=dict, read_history=tuple)

    getters = view(ImageSoftmax()).inputs(acquisition)
    candidates = np.array([3, 5, 8])
    rows = getters["features"](candidates)
    np.testing.assert_array_equal(rows, pool[candidates].reshape(3, 64))
    np.testing.assert_allclose(getters["predict_proba"](candidates)(rows), getters["probs"](candidates))
    untrained = view(None).inputs(acquisition)["predict_proba"](candidates)
    with pytest.raises(ConfigError, match="acquisition 'dropquery' needs a trained model"):
        untrained(rows)


# --- end to end ------------------------------------------------------------------------------------------------


def test_a_digits_run_with_dropquery(tmp_path):
    run_dir = tmp_path / "run"
    run_in_process(run_dir, "+experiment=digits", "loop.rounds=2", "selection.budget=10", "acquisition=dropquery")
    chosen = selected_ids(run_dir)
    assert len(chosen) == len(set(chosen)) == 20
    assert [int(row["rank"]) for row in table(run_dir / "selected" / "round_000.csv")] == list(range(1, 11))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in rows] == [20, 30, 40]
    assert rows[-1]["test_accuracy"] > 0.8


def test_dropquery_needs_labels_in_round_zero(tmp_path):
    with pytest.raises(ConfigError, match="acquisition 'dropquery' needs a trained model"):
        run_in_process(tmp_path / "run", "+experiment=digits", "acquisition=dropquery", "loop.initial_labels=0")

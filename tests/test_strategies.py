"""Batch and diversity strategies against hand-computed values and independent brute-force routes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from plugins.acquisition.badge import badge, gradient_factors
from plugins.acquisition.batchbald import _draw_configurations, _draw_labels, _joint_entropy, batchbald
from plugins.acquisition.bayesian import bald
from plugins.acquisition.cluster_margin import cluster_margin, round_robin
from plugins.acquisition.coreset import covering_radius, k_center_greedy
from plugins.acquisition.diverse_margin import diverse_margin
from plugins.acquisition.dropquery import dropquery
from plugins.acquisition.image_diversity import image_diversity, merged_positions, positions
from plugins.acquisition.inputs import embedding_rows, probs_and_embeddings
from plugins.acquisition.probcover import probcover, purity_delta
from plugins.acquisition.typiclust import typicality_scores, typiclust
from plugins.acquisition.uncertainty import margin
from plugins.acquisition.weighted import normalised_ranks, rank_sum


def blobs(n_blobs: int, per_blob: int, d: int = 2, spread: float = 0.05, seed: int = 0):
    """Well-separated Gaussian blobs on a circle of radius 10; returns (points, blob of each point)."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(n_blobs) / n_blobs
    centres = np.zeros((n_blobs, d))
    centres[:, 0], centres[:, 1] = 10 * np.cos(angles), 10 * np.sin(angles)
    blob = np.repeat(np.arange(n_blobs), per_blob)
    return centres[blob] + spread * rng.standard_normal((len(blob), d)), blob


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))


# --- k-center greedy ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_labeled", [0, 2])
def test_k_center_greedy_within_twice_the_optimal_radius(seed: int, n_labeled: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.random((11, 2))
    labeled = rng.random((n_labeled, 2))
    k = 3
    chosen = k_center_greedy(x, labeled, k)

    def radius(subset) -> float:
        centres = np.concatenate([labeled, x[list(subset)]])
        return distances(x, centres).min(axis=1).max()

    optimal = min(radius(s) for s in itertools.combinations(range(len(x)), k))
    greedy = radius(chosen)
    assert greedy <= 2 * optimal + 1e-9
    assert covering_radius(x, np.concatenate([labeled, x[chosen]])) == pytest.approx(greedy, rel=1e-6)


def test_k_center_greedy_matches_a_full_matrix_greedy() -> None:
    rng = np.random.default_rng(3)
    x, labeled = rng.standard_normal((300, 8)), rng.standard_normal((5, 8))
    nearest = distances(x, labeled).min(axis=1)
    expected = []
    for _ in range(40):
        pick = int(np.argmax(nearest))
        expected.append(pick)
        nearest = np.minimum(nearest, distances(x, x[pick : pick + 1])[:, 0])
    assert k_center_greedy(x, labeled, 40).tolist() == expected


def test_k_center_greedy_cold_start_begins_nearest_the_mean() -> None:
    x = np.array([[0.0, 0.0], [10.0, 0.0], [4.0, 0.0], [0.0, 10.0]])  # mean (3.5, 2.5): nearest is row 2
    chosen = k_center_greedy(x, np.zeros((0, 2)), 2)
    assert chosen[0] == 2
    assert chosen[1] == 3  # distances from row 2: 4, 6, -, sqrt(116)


def test_k_center_greedy_never_repeats_on_duplicates() -> None:
    x = np.ones((5, 3))
    assert sorted(k_center_greedy(x, np.zeros((0, 3)), 5).tolist()) == [0, 1, 2, 3, 4]


# --- BALD and BatchBALD ---------------------------------------------------------------------------


def test_bald_is_zero_when_all_samples_agree() -> None:
    p = np.random.default_rng(0).dirichlet(np.ones(4), size=6)
    samples = np.broadcast_to(p, (10, 6, 4))
    assert np.allclose(bald(samples), 0.0, atol=1e-12)
    # Disagreeing one-hot samples: H(mean) = log 2, every H(p_t) = 0.
    split = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert bald(split) == pytest.approx([np.log(2)])


@pytest.mark.parametrize("seed", range(5))
def test_batchbald_of_one_is_bald_argmax(seed: int) -> None:
    samples = np.random.default_rng(seed).dirichlet(np.ones(5) * 0.3, size=(12, 200))
    assert batchbald(samples, 1, np.random.default_rng(0)).tolist() == [int(np.argmax(bald(samples)))]


def brute_batchbald_score(samples: np.ndarray, batch: list[int]) -> float:
    """I(y_batch; w) by enumerating every joint label configuration."""
    t, _, c = samples.shape
    joint_entropy = 0.0
    for labels in itertools.product(range(c), repeat=len(batch)):
        pairs = list(zip(batch, labels, strict=True))
        p = np.mean([np.prod([samples[m, j, y] for j, y in pairs]) for m in range(t)])
        joint_entropy -= p * np.log(p) if p > 0 else 0.0
    s = samples[:, batch, :]
    conditional = -(s * np.log(np.where(s > 0, s, 1.0))).sum(axis=2).mean(axis=0).sum()
    return joint_entropy - conditional


def test_batchbald_greedy_steps_maximise_the_enumerated_mutual_information() -> None:
    samples = np.random.default_rng(7).dirichlet(np.ones(3) * 0.4, size=(6, 15))
    chosen = batchbald(samples, 3, np.random.default_rng(0)).tolist()
    for step in range(3):
        prefix = chosen[:step]
        scores = [
            brute_batchbald_score(samples, prefix + [i]) if i not in prefix else -np.inf for i in range(15)
        ]
        assert chosen[step] == int(np.argmax(scores))


def test_batchbald_skips_duplicates_that_top_k_bald_takes() -> None:
    # Items 0-2 are copies (highest BALD); item 3 is independent with a slightly lower BALD.
    copy = np.array([[[0.9, 0.1]], [[0.1, 0.9]]] * 2)
    other = np.array([[[0.85, 0.15]], [[0.85, 0.15]], [[0.15, 0.85]], [[0.15, 0.85]]])
    samples = np.concatenate([copy, copy, copy, other], axis=1)
    assert set(np.argsort(-bald(samples))[:2].tolist()) <= {0, 1, 2}
    assert batchbald(samples, 2, np.random.default_rng(0)).tolist() == [0, 3]


def test_batchbald_sampled_joint_entropy_matches_enumeration() -> None:
    samples = np.random.default_rng(11).dirichlet(np.ones(3) * 0.5, size=(6, 8))
    t, _, c = samples.shape
    batch = [0, 1, 2]
    joint = np.ones((t, 1))
    for j in batch[:2]:
        joint = (joint[:, :, None] * samples[:, j, None, :]).reshape(t, -1)
    # Draw configurations of items 0 and 1, extend them by item 2, then score item 3 (and the rest).
    drawn, models = _draw_configurations(joint, 40_000, np.random.default_rng(0))
    drawn = drawn * samples[:, 2, _draw_labels(samples[models, 2, :], np.random.default_rng(1))]
    estimate = _joint_entropy(drawn, samples, sampled=True)
    conditional = -(samples * np.log(samples)).sum(axis=2).mean(axis=0)
    for i in range(3, 8):
        exact = brute_batchbald_score(samples, batch + [i]) + conditional[batch + [i]].sum()
        assert estimate[i] == pytest.approx(exact, abs=0.03)


def test_batchbald_past_the_enumeration_limit_still_picks_distinct_items() -> None:
    samples = np.random.default_rng(11).dirichlet(np.ones(4) * 0.3, size=(8, 60))
    exact = batchbald(samples, 3, np.random.default_rng(0))
    rough = batchbald(samples, 10, np.random.default_rng(0), max_configurations=4)
    assert len(set(rough.tolist())) == 10 and rough[0] == exact[0]


# --- BADGE ----------------------------------------------------------------------------------------


def gradient_embeddings(probs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The full (n, C*d) gradient embeddings by their definition, (p - onehot(argmax p)) outer x, row by row."""
    rows = []
    for p, features in zip(probs, x, strict=True):
        a = p - np.eye(len(p))[np.argmax(p)]
        rows.append(np.outer(a, features).ravel())
    return np.array(rows)


def test_badge_matches_kmeans_pp_on_explicit_gradient_embeddings() -> None:
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(4), size=80)
    x = rng.standard_normal((80, 6))
    g = gradient_embeddings(probs, x)
    reference_rng = np.random.default_rng(42)
    chosen = [int(np.argmax((g**2).sum(axis=1)))]
    for _ in range(9):
        d2 = distances(g, g[chosen]).min(axis=1) ** 2
        chosen.append(int(reference_rng.choice(80, p=d2 / d2.sum())))
    assert badge(probs, x, 10, np.random.default_rng(42)).tolist() == chosen


def test_badge_gradient_factors_by_hand() -> None:
    a, x = gradient_factors(np.array([[0.7, 0.3]]), np.array([[2.0, -1.0]]))
    # a = p - onehot(0) = (-0.3, 0.3); a outer x = [[-0.6, 0.3], [0.6, -0.3]]
    assert a[0].tolist() == pytest.approx([-0.3, 0.3]) and x[0].tolist() == [2.0, -1.0]
    assert np.outer(a[0], x[0]).ravel().tolist() == pytest.approx([-0.6, 0.3, 0.6, -0.3])
    assert gradient_embeddings(np.array([[0.7, 0.3]]), np.array([[2.0, -1.0]]))[0].tolist() == pytest.approx(
        [-0.6, 0.3, 0.6, -0.3]
    )


def test_badge_picks_one_point_per_blob() -> None:
    x, blob = blobs(5, 30, d=4, spread=0.01)
    rng = np.random.default_rng(0)
    # The same uncertain prediction inside a blob, a different predicted class per blob.
    probs = np.full((len(x), 5), 0.1)
    probs[np.arange(len(x)), blob] = 0.6
    probs += 0.001 * rng.random(probs.shape)
    probs /= probs.sum(axis=1, keepdims=True)
    for seed in range(5):
        assert sorted(blob[badge(probs, x, 5, np.random.default_rng(seed))].tolist()) == [0, 1, 2, 3, 4]


# --- Cluster-Margin -------------------------------------------------------------------------------


def test_cluster_margin_spreads_over_blobs() -> None:
    x, blob = blobs(4, 25)
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=len(x))
    for seed in range(5):
        chosen = cluster_margin(probs, x, 4, np.random.default_rng(seed), margin_multiplier=25.0)
        assert sorted(blob[chosen].tolist()) == [0, 1, 2, 3]


def test_cluster_margin_keeps_only_low_margin_candidates() -> None:
    x, _ = blobs(3, 20)
    probs = np.random.default_rng(2).dirichlet(np.ones(3), size=len(x))
    chosen = cluster_margin(probs, x, 6, np.random.default_rng(0), margin_multiplier=1.0)
    lowest = np.argsort(-margin(probs), kind="stable")[:6]
    assert set(chosen.tolist()) == set(lowest.tolist())


def test_round_robin_visits_smallest_group_first() -> None:
    items = np.array([10, 11, 12, 20, 30, 31])
    groups = np.array([7, 7, 7, 2, 5, 5])  # sizes: group 2 -> 1, group 5 -> 2, group 7 -> 3
    picked = round_robin(items, groups, 6, np.random.default_rng(0))
    group_of = dict(zip(items.tolist(), groups.tolist(), strict=True))
    assert [group_of[i] for i in picked.tolist()] == [2, 5, 7, 5, 7, 7]
    assert round_robin(items, groups, 2, np.random.default_rng(0)).tolist() == picked[:2].tolist()


# --- TypiClust and ProbCover ----------------------------------------------------------------------


def test_typicality_by_hand() -> None:
    points = np.array([[0.0], [1.0], [3.0]])
    assert typicality_scores(points, 1) == pytest.approx([1.0, 1.0, 0.5])
    assert typicality_scores(points, 2) == pytest.approx([1 / 2.0, 1 / 1.5, 1 / 2.5])


def test_typiclust_cold_start_one_point_per_blob() -> None:
    x, blob = blobs(5, 40)
    for seed in range(3):
        chosen = typiclust(x, np.zeros((0, 2)), 5, np.random.default_rng(seed))
        assert sorted(blob[chosen].tolist()) == [0, 1, 2, 3, 4]


def test_typiclust_picks_the_most_typical_point_of_a_blob() -> None:
    # One dense clump and two stragglers: the point in the middle of the clump is the most typical.
    x = np.array([[0.0, 0.0], [0.1, 0.0], [-0.1, 0.0], [0.0, 0.1], [0.0, -0.1], [3.0, 0.0], [0.0, 3.0]])
    assert typiclust(x, np.zeros((0, 2)), 1, np.random.default_rng(0), k_neighbors=4).tolist() == [0]


def test_typiclust_avoids_blobs_that_hold_a_label() -> None:
    x, blob = blobs(4, 30)
    labeled = x[blob == 2][:1] + 0.001
    chosen = typiclust(x, labeled, 3, np.random.default_rng(0))
    assert sorted(blob[chosen].tolist()) == [0, 1, 3]


def test_probcover_greedy_coverage_by_hand() -> None:
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    # balls (delta 1): 0:{0,1} 1:{0,1,2} 2:{1,2} 3:{3,4} 4:{3,4}; then all covered -> densest, lower position.
    assert probcover(x, np.zeros((0, 1)), 3, 2, np.random.default_rng(0), delta=1.0).tolist() == [1, 3, 0]
    # A labelled point at 0.5 already covers 0 and 1: the first gain is item 2's or item 3's ball, 2 each.
    assert probcover(x, np.array([[0.5]]), 2, 2, np.random.default_rng(0), delta=1.0).tolist() == [3, 1]


def test_purity_delta_by_hand() -> None:
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    # distance to the other cluster: 10, 9, 8, 8, 9
    assert purity_delta(x, 2, np.random.default_rng(0), purity=0.8) == pytest.approx(8.0)
    assert purity_delta(x, 2, np.random.default_rng(0), purity=0.8) < 8.0
    assert purity_delta(x, 2, np.random.default_rng(0), purity=0.6) == pytest.approx(9.0)


@pytest.mark.parametrize("delta", [None, 1.0])
def test_probcover_cold_start_one_point_per_blob(delta: float | None) -> None:
    x, blob = blobs(5, 40)
    chosen = probcover(x, np.zeros((0, 2)), 5, 5, np.random.default_rng(0), delta=delta)
    assert sorted(blob[chosen].tolist()) == [0, 1, 2, 3, 4]


def test_probcover_avoids_covered_blobs() -> None:
    x, blob = blobs(4, 30)
    chosen = probcover(x, x[blob == 1][:1], 3, 4, np.random.default_rng(0), delta=1.0)
    assert sorted(blob[chosen].tolist()) == [0, 2, 3]


# --- Image Diversity ------------------------------------------------------------------------------


def test_merged_positions_by_hand() -> None:
    labels = np.array([1, 0, 1, 2, 0, 1, 2, 0])
    dist = np.array([0.3, 0.2, 0.1, 0.5, 0.2, 0.2, 0.4, 0.9])
    # sizes: 0 -> 3, 1 -> 3, 2 -> 2; pass order: cluster 0, cluster 1 (size tie: lower label), cluster 2.
    # cluster 0 by distance: 1 (0.2), 4 (0.2, later position), 7; cluster 1: 2, 5, 0; cluster 2: 6, 3.
    order = [1, 2, 6, 4, 5, 3, 7, 0]
    expected = np.empty(8, dtype=int)
    expected[order] = np.arange(8)
    assert merged_positions(labels, dist).tolist() == expected.tolist()


def test_image_diversity_round_robin_on_synthetic_clusters() -> None:
    a = 64 + np.array([-0.375, -0.125, 0.0625, 0.4375])  # centroid 64; nearest first: 2, 1, 0, 3
    b = 0 + np.array([0.25, -0.0625, -0.1875])  # centroid 0; nearest first: 1, 2, 0
    c = np.array([-64.0])  # (two points would tie: both sit at the same distance from their mean)
    values = np.concatenate([a, b, c])
    names = ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "c0"]
    shuffle = np.random.default_rng(0).permutation(len(values))
    x = np.stack([values[shuffle], np.zeros(len(values))], axis=1)
    # Hand-built: clusters by size a (4), b (3), c (1); passes take the nearest remaining of each in turn.
    expected_order = ["a2", "b1", "c0", "a1", "b2", "a0", "b0", "a3"]
    got = positions(x, 3, np.random.default_rng(0))
    assert [names[shuffle[i]] for i in np.argsort(got)] == expected_order
    assert image_diversity(x, 3, np.random.default_rng(0)).tolist() == (-got).tolist()


def test_image_diversity_skips_fewer_items_than_classes() -> None:
    x = np.arange(8.0).reshape(4, 2)
    assert positions(x, 10, np.random.default_rng(0)).tolist() == [0, 0, 0, 0]


# --- weighted rank sum ----------------------------------------------------------------------------


def test_rank_sum_by_hand() -> None:
    columns = {"a": np.array([3.0, 1.0, 2.0, 2.0]), "b": np.array([10.0, 20.0, 30.0, 40.0])}
    # a: ranks 4, 1, 2.5, 2.5 -> (r - 1) / 3 = 1, 0, 0.5, 0.5;  b: 0, 1/3, 2/3, 1
    assert normalised_ranks(columns["a"]).tolist() == pytest.approx([1.0, 0.0, 0.5, 0.5])
    assert rank_sum(columns, {"a": 2.0, "b": -1.0}).tolist() == pytest.approx([2.0, -1 / 3, 1 / 3, 0.0])
    assert normalised_ranks(np.array([5.0])).tolist() == [0.5]


def test_rank_sum_rejects_unmatched_names() -> None:
    with pytest.raises(ValueError, match="unmatched: c"):
        rank_sum({"a": np.ones(2)}, {"a": 1.0, "c": 1.0})
    with pytest.raises(ValueError, match="length"):
        rank_sum({"a": np.ones(2), "b": np.ones(3)}, {"a": 1.0, "b": 1.0})


# --- every batch strategy -------------------------------------------------------------------------


def _pool(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    x, _ = blobs(4, n // 4, d=5, spread=1.0, seed=seed)
    weights = rng.standard_normal((5, 4))

    def predict_proba(rows: np.ndarray) -> np.ndarray:  # a linear softmax over the embeddings as model input
        z = rows @ weights
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return {
        "probs": rng.dirichlet(np.ones(4), size=n),
        "samples": rng.dirichlet(np.ones(4) * 0.5, size=(8, n)),
        "embeddings": x,
        "labeled_embeddings": rng.standard_normal((3, 5)),
        "n_classes": 4,
        "predict_proba": predict_proba,
    }


STRATEGIES = {
    "coreset": lambda p, b, rng: k_center_greedy(p["embeddings"], p["labeled_embeddings"], b),
    "badge": lambda p, b, rng: badge(p["probs"], p["embeddings"], b, rng),
    "batchbald": lambda p, b, rng: batchbald(p["samples"], b, rng, max_configurations=64),
    "cluster_margin": lambda p, b, rng: cluster_margin(p["probs"], p["embeddings"], b, rng),
    "typiclust": lambda p, b, rng: typiclust(p["embeddings"], p["labeled_embeddings"], b, rng),
    "probcover": lambda p, b, rng: probcover(
        p["embeddings"], p["labeled_embeddings"], b, p["n_classes"], rng
    ),
    "dropquery": lambda p, b, rng: dropquery(
        p["embeddings"], p["predict_proba"](p["embeddings"]), p["predict_proba"], b, rng
    ),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("budget", [1, 7, 60, 100])
def test_batch_strategies_return_distinct_positions_deterministically(name: str, budget: int) -> None:
    pool = _pool()
    first = STRATEGIES[name](pool, budget, np.random.default_rng(123))
    again = STRATEGIES[name](pool, budget, np.random.default_rng(123))
    n = len(pool["embeddings"])
    assert first.dtype.kind == "i"
    assert len(first) == min(budget, n)
    assert len(set(first.tolist())) == len(first)
    assert ((first >= 0) & (first < n)).all()
    assert first.tolist() == again.tolist()


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_batch_strategies_accept_a_zero_budget(name: str) -> None:
    assert len(STRATEGIES[name](_pool(), 0, np.random.default_rng(0))) == 0


# --- shared input checks --------------------------------------------------------------------------


def test_embedding_rows_are_float64_unless_float32_is_kept() -> None:
    small = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert embedding_rows(small).dtype == np.float64
    kept = embedding_rows(small, keep_float32=True)
    assert kept is small  # no copy
    assert embedding_rows(np.arange(4).reshape(2, 2), keep_float32=True).dtype == np.float64  # integers convert
    assert embedding_rows([[1, 2]]).tolist() == [[1.0, 2.0]]


def test_probs_and_embeddings_come_back_as_float64() -> None:
    p, x = probs_and_embeddings([[0.5, 0.5]], np.ones((1, 3), dtype=np.float32))
    assert p.dtype == x.dtype == np.float64 and p.shape == (1, 2) and x.shape == (1, 3)


@pytest.mark.parametrize(
    "strategy",
    [
        lambda x: k_center_greedy(x, np.zeros((0, 2)), 2),
        lambda x: covering_radius(x, np.zeros((1, 2))),
        lambda x: image_diversity(x, 2, np.random.default_rng(0)),
        lambda x: typiclust(x, np.zeros((0, 2)), 2, np.random.default_rng(0)),
        lambda x: probcover(x, np.zeros((0, 2)), 2, 2, np.random.default_rng(0), delta=1.0),
    ],
)
def test_strategies_refuse_embeddings_that_are_not_rows_in_the_same_words(strategy) -> None:
    with pytest.raises(ValueError, match=r"^embeddings must be 2-D \(n, d\), got shape \(4,\)$"):
        strategy(np.zeros(4))


@pytest.mark.parametrize(
    "strategy",
    [
        lambda p, x: badge(p, x, 2, np.random.default_rng(0)),
        lambda p, x: cluster_margin(p, x, 2, np.random.default_rng(0)),
        lambda p, x: diverse_margin(p, x, 2, np.random.default_rng(0)),
    ],
)
def test_strategies_refuse_probs_and_embeddings_of_different_n_in_the_same_words(strategy) -> None:
    message = r"^probs \(n, C\) and embeddings \(n, d\) need the same n, got \(3, 2\) and \(4, 5\)$"
    with pytest.raises(ValueError, match=message):
        strategy(np.full((3, 2), 0.5), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="need the same n"):
        strategy(np.full(3, 0.5), np.zeros((3, 5)))  # probs not 2-D

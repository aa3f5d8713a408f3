"""Scoring a pool in parts: acquisition inputs computed once, chunk by chunk, shard by shard (the same numbers
as in one piece), per-item model outputs a chunk at a time whatever the strategy, and the compute backend's
shards in order."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from plugins.acquisition.protocol import Decision
from plugins.acquisition.uncertainty import entropy, margin
from runner.acquire import Acquisition, InputProvider, score_candidates, score_shards, select_batch
from runner.compute import Compute, shards
from runner.errors import PluginError
from runner.views import Predictor


class Softmax:
    """A fixed linear model on flattened images that counts the rows it is asked about at once."""

    def __init__(self, n_features: int, n_classes: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.weights = rng.normal(size=(n_features, n_classes))
        self.largest = 0

    def _logits(self, X: np.ndarray) -> np.ndarray:
        self.largest = max(self.largest, len(X))
        return np.asarray(X, dtype=np.float64).reshape(len(X), self.weights.shape[0]) @ self.weights

    def fit(self, X: np.ndarray, y: np.ndarray) -> Softmax:
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self._logits(X)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._logits(X).argmax(axis=1)

    def predict_proba_samples(self, X: np.ndarray, T: int) -> np.ndarray:
        base = self.predict_proba(X)
        return np.stack([np.roll(base, shift, axis=1) for shift in range(T)])


def pool(n: int = 1000, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 4, 4), dtype=np.float32)


@pytest.mark.parametrize("chunk_size", [1, 7, 100, 999, 1000, 5000])
def test_model_outputs_a_chunk_at_a_time_equal_one_piece_and_never_ask_for_more(chunk_size):
    images, indices = pool(), np.arange(3, 1000, 2)
    model = Softmax(16, 5)
    whole = Predictor(model, images, 5, "softmax", mc_samples=3, chunk_size=10_000)
    parts = Predictor(model, images, 5, "softmax", mc_samples=3, chunk_size=chunk_size)
    for ask in ("probs", "predictions", "samples"):
        expected = getattr(whole, ask)(indices)
        model.largest = 0
        found = getattr(parts, ask)(indices)
        assert model.largest <= chunk_size
        np.testing.assert_allclose(found, expected, rtol=0, atol=1e-12)
    assert parts.probs(indices[:0]).shape == (0, 5)


def test_a_broken_model_is_named_whichever_chunk_breaks():
    class Broken(Softmax):
        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            probs = super().predict_proba(X)
            probs[-1] = 0.5  # rows that do not sum to 1, in the last chunk only
            return probs

    with pytest.raises(PluginError, match="broken: predict_proba rows do not sum to 1"):
        Predictor(Broken(16, 5), pool(), 5, "broken", chunk_size=64).probs(np.arange(1000))


def provider(candidates: np.ndarray, predictor: Predictor) -> InputProvider:
    return InputProvider(candidates, {"probs": predictor.probs, "samples": predictor.samples}, {"n_classes": 5})


def acquisition(function, inputs: tuple[str, ...]) -> Acquisition:
    return Acquisition("test", function, inputs, mc_samples=3)


@pytest.mark.parametrize("function", [entropy, margin])
def test_scores_chunked_and_sharded_equal_one_piece(function):
    images, candidates = pool(2000), np.arange(0, 2000, 3)
    predictor = Predictor(Softmax(16, 5), images, 5, "softmax", chunk_size=10_000)
    scoring = acquisition(function, ("probs",))
    whole, _ = score_candidates(scoring, provider(candidates, predictor), chunk_size=10_000)
    # Computed independently: the function on every candidate's probabilities at once.
    np.testing.assert_array_equal(whole, function(predictor.probs(candidates)))
    chunked, _ = score_candidates(scoring, provider(candidates, predictor), chunk_size=50)
    getters = {"probs": predictor.probs, "samples": predictor.samples}
    sharded, _ = score_shards(scoring, candidates, getters, {"n_classes": 5}, 50, 120, Compute())
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)
    # Shards hold whole chunks (120 -> 150 items), so every chunk is the one a single pass makes: the same bits.
    np.testing.assert_array_equal(sharded, chunked)


def test_an_input_is_computed_once_per_stage_and_sliced_per_chunk():
    calls = []

    def probs(part: np.ndarray) -> np.ndarray:
        calls.append(len(part))
        return np.full((len(part), 2), 0.5)

    given = InputProvider(np.arange(10), {"probs": probs}, {"n_classes": 2})
    assert given.get("probs").shape == (10, 2) and given.get("probs", slice(2, 5)).shape == (3, 2)
    assert calls == [10]  # the second call was a slice of the first
    fresh = InputProvider(np.arange(10), {"probs": probs}, {"n_classes": 2})
    assert fresh.get("probs", slice(0, 4)).shape == (4, 2) and calls == [10, 4]  # a chunk alone, not the whole
    assert fresh.get("n_items", slice(0, 4)) == 4 and fresh.get("n_classes") == 2


def test_a_record_that_differs_between_chunks_is_refused():
    counter = iter(range(100))

    def moody(probs: np.ndarray) -> Decision:
        return Decision(np.zeros(len(probs)), {"call": next(counter)})

    predictor = Predictor(Softmax(16, 5), pool(), 5, "softmax")
    with pytest.raises(PluginError, match="recorded different things for different chunks"):
        score_candidates(acquisition(moody, ("probs",)), provider(np.arange(200), predictor), chunk_size=50)


def test_a_batch_strategys_positions_are_checked():
    predictor = Predictor(Softmax(16, 5), pool(), 5, "softmax")

    def twice(probs: np.ndarray, budget: int) -> np.ndarray:
        return np.array([0, 0])

    def first(probs: np.ndarray, budget: int) -> np.ndarray:
        return np.arange(budget)

    positions, _ = select_batch(acquisition(first, ("probs", "budget")), provider(np.arange(50), predictor), 4)
    assert positions.tolist() == [0, 1, 2, 3]
    with pytest.raises(PluginError, match="not 2 distinct ones"):
        select_batch(acquisition(twice, ("probs", "budget")), provider(np.arange(50), predictor), 2)


def test_shards_cover_the_items_in_order():
    assert shards(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert shards(0, 4) == [] and shards(3, 5) == [slice(0, 3)]
    assert Compute().map(lambda part: (part.start, part.stop), shards(5, 2)) == [(0, 2), (2, 4), (4, 5)]


@pytest.mark.skipif(sys.platform != "linux", reason="address-space limits as Linux applies them")
@pytest.mark.slow
def test_a_batch_strategy_runs_under_a_memory_cap_the_whole_pool_path_breaks(tmp_path):
    """200,000 images of 28x28 on disk (627 MB as float32, 1.25 GB as the float64 a scikit-learn model converts
    them to), scored by a batch strategy under an address-space cap of 600 MB above what the process holds: the
    pool in one piece cannot be read, a chunk at a time it can."""
    script = textwrap.dedent(f"""
        import resource
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from plugins.sources.dataset import StoredImages
        from plugins.models.sklearn_model import SklearnClassifier
        from runner.acquire import Acquisition, InputProvider, select_batch
        from runner.views import Predictor
        from plugins.acquisition.diverse_margin import diverse_margin

        n = 200_000
        rng = np.random.default_rng(0)
        np.save("{tmp_path}/pool.npy", rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        images = StoredImages("{tmp_path}/pool.npy")
        model = SklearnClassifier(LogisticRegression(max_iter=50), n_classes=10)
        model.fit(images[:200], np.arange(200) % 10)
        embeddings = rng.random((n, 8), dtype=np.float32)
        with open("/proc/self/status") as status:
            held = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmSize:"))
        cap = held + 600 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        chosen = Acquisition("diverse_margin", diverse_margin, ("probs", "embeddings", "rng", "budget"), None)
        for chunk_size in (8192, n):
            predictor = Predictor(model, images, 10, "logreg", chunk_size=chunk_size)
            given = InputProvider(np.arange(n), {{"probs": predictor.probs, "embeddings": lambda i: embeddings[i]}},
                                  {{"n_classes": 10, "rng": np.random.default_rng(0)}})
            try:
                positions, _ = select_batch(chosen, given, 20)
                print(chunk_size, "selected", len(positions))
            except MemoryError:
                print(chunk_size, "MemoryError")
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["8192 selected 20", "200000 MemoryError"], done.stdout

"""Models trained on embeddings (model.input=embeddings), the embedding cache, and the self-supervised embedder."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from plugins.embedders.pixels import PixelPCA
from plugins.embedders.self_supervised import SelfSupervised, nt_xent
from runner.embedding_cache import EmbeddingCache, embedder_identity, images_digest
from runner.quality import Embeddings
from tests.conftest import run_cli, run_in_process

DIGITS = ("project=digits", "loop.rounds=2", "selection.budget=10", "loop.initial_labels=20")
# A self-supervised encoder small enough for a test: a few steps of a narrow network.
TINY_SSL = ("embedder=self_supervised", "embedder.epochs=1", "embedder.max_steps=3", "embedder.width=4",
            "embedder.batch_size=64")


def stored(run_dir: Path, name: str) -> np.ndarray:
    from runner.store import Store

    store = Store(run_dir / "state.sqlite")
    try:
        return np.asarray(store.array(name))
    finally:
        store.close()


def test_a_model_on_embeddings_sees_the_embedders_vectors(tmp_path):
    run_dir = tmp_path / "run"
    run_in_process(run_dir, *DIGITS, "model.input=embeddings")
    vectors = stored(run_dir, "embeddings/static")
    from sklearn.datasets import load_digits

    images = (load_digits().images / 16.0).astype(np.float32)
    assert vectors.shape == (len(images), 50)
    # The independent route: PCA of the same pixels (the exact solver: no draws), a logistic regression on the
    # rows of round 0's labelled items, scored on the test items.
    expected = PixelPCA(n_components=50).fit_transform(images)
    np.testing.assert_allclose(vectors, expected, atol=1e-4)
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        initial = db.execute("SELECT idx, label FROM labels WHERE round = -1 ORDER BY idx").fetchall()
        test = [row[0] for row in db.execute("SELECT idx FROM items WHERE split = 'test' ORDER BY idx")]
    truth = load_digits().target
    rows, labels = np.array([r[0] for r in initial]), np.array([r[1] for r in initial])
    model = LogisticRegression(C=1.0, max_iter=200).fit(expected[rows].astype(np.float64), labels)
    accuracy = float((model.predict(expected[test].astype(np.float64)) == truth[test]).mean())
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert first["round"] == 0 and first["test_accuracy"] == pytest.approx(accuracy, abs=2 / len(test))


def test_embeddings_and_the_model_must_not_ask_each_other():
    from runner.assemble import assemble
    from runner.errors import ConfigError
    from tests.conftest import compose_config

    config = compose_config(*DIGITS, "model.input=embeddings", "embedder=model", "model=cnn")
    with pytest.raises(ConfigError) as caught:
        assemble(config)
    message = str(caught.value)
    assert "\n" not in message and "model.input=embeddings" in message and "embedder=pixels" in message


def test_an_unknown_model_input_is_one_line(tmp_path):
    result = run_cli(*DIGITS, "model.input=features", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.input" in lines[0] and "embeddings" in lines[0]


class CountingEmbedder:
    """Rows that are a fixed function of the pixels; counts how often it is fitted."""

    worth_caching = True
    fits = 0

    def fit_transform(self, images):
        type(self).fits += 1
        self.loss_curve_ = [2.0, 1.0]
        flat = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
        return np.stack([flat.mean(axis=1), flat.max(axis=1)], axis=1)


def test_the_cache_is_read_again_and_keyed_by_images_and_encoder(tmp_path):
    images = np.random.default_rng(0).random((30, 6, 6), dtype=np.float32)
    node = {"_target_": "tests.test_embedding_features.CountingEmbedder"}
    CountingEmbedder.fits = 0

    def embed(pixels, identity_node):
        embeddings = Embeddings(CountingEmbedder(), True, EmbeddingCache(tmp_path, embedder_identity(identity_node)))
        return embeddings.fit_static(pixels), embeddings.loss_curve

    first, curve = embed(images, node)
    again, curve_again = embed(images, node)
    assert CountingEmbedder.fits == 1
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(curve_again, [2.0, 1.0])
    assert len(list(tmp_path.glob("*.npz"))) == 1 and not list(tmp_path.glob("*.tmp"))

    edited = images.copy()
    edited[7, 2, 3] += 0.5  # one pixel of one image
    embed(edited, node)
    assert CountingEmbedder.fits == 2
    embed(images, {**node, "width": 8})  # another encoder setting
    assert CountingEmbedder.fits == 3
    embed(images, node)
    assert CountingEmbedder.fits == 3


def test_an_encoder_file_edited_in_place_is_a_new_encoder(tmp_path):
    weights = tmp_path / "encoder.onnx"
    weights.write_bytes(b"first")
    node = {"_target_": "plugins.embedders.pretrained.LocalWeights", "weights_path": str(weights)}
    before = embedder_identity(node)
    assert embedder_identity(node) == before
    weights.write_bytes(b"second")
    assert embedder_identity(node) != before


def test_a_damaged_cache_entry_is_computed_again(tmp_path):
    images = np.random.default_rng(1).random((12, 4, 4), dtype=np.float32)
    cache = EmbeddingCache(tmp_path, "id")
    cache.path(cache.key(images)).parent.mkdir(parents=True, exist_ok=True)
    cache.path(cache.key(images)).write_bytes(b"not an npz")
    CountingEmbedder.fits = 0
    vectors = Embeddings(CountingEmbedder(), True, cache).fit_static(images)
    assert CountingEmbedder.fits == 1 and vectors.shape == (12, 2)


def test_the_images_digest_does_not_depend_on_the_chunking(monkeypatch):
    images = np.random.default_rng(2).random((50, 3, 3), dtype=np.float32)
    whole = images_digest(images)
    monkeypatch.setattr("runner.embedding_cache.HASH_CHUNK", 7)
    assert images_digest(images) == whole


def test_nt_xent_matches_its_definition():
    import torch

    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(4, 3, generator=generator), torch.randn(4, 3, generator=generator)
    tau = 0.5
    z = torch.nn.functional.normalize(torch.cat([first, second]), dim=1).numpy().astype(np.float64)
    similarity = z @ z.T / tau
    losses = []
    for i in range(8):
        j = (i + 4) % 8
        others = [k for k in range(8) if k != i]
        losses.append(-similarity[i, j] + np.log(np.exp(similarity[i, others]).sum()))
    assert float(nt_xent(first, second, tau)) == pytest.approx(np.mean(losses), rel=1e-5)


def test_the_self_supervised_embedder_is_deterministic_for_a_seed():
    from sklearn.datasets import load_digits

    images = (load_digits().images[:300] / 16.0).astype(np.float32)
    settings = dict(epochs=2, max_steps=6, width=4, batch_size=64)
    first = SelfSupervised(seed=3, **settings)
    vectors = first.fit_transform(images)
    again = SelfSupervised(seed=3, **settings).fit_transform(images)
    other = SelfSupervised(seed=4, **settings).fit_transform(images)
    np.testing.assert_array_equal(vectors, again)
    assert not np.allclose(vectors, other)
    assert vectors.shape == (300, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)  # L2-normalised rows
    assert len(first.loss_curve_) == 2 and all(np.isfinite(first.loss_curve_))


def test_colour_images_of_any_size_embed():
    images = np.random.default_rng(0).random((40, 20, 13, 3), dtype=np.float32)
    vectors = SelfSupervised(epochs=1, max_steps=2, width=4, batch_size=16, flip=True).fit_transform(images)
    assert vectors.shape == (40, 16) and np.isfinite(vectors).all()


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": 1}, {"temperature": 0}])
def test_impossible_training_settings_are_refused(bad):
    with pytest.raises(ValueError):
        SelfSupervised(**bad)


@pytest.mark.slow
def test_a_run_with_the_self_supervised_embedder_reads_its_cache_the_second_time(tmp_path):
    cache = tmp_path / "cache"
    runs = []
    for name in ("first", "second"):
        run_dir = tmp_path / name
        result = run_cli(*DIGITS, *TINY_SSL, "model.input=embeddings", "acquisition=typiclust",
                         f"compute.embedding_cache={cache}", f"hydra.run.dir={run_dir}")
        assert result.returncode == 0, result.stderr[-2000:]
        runs.append(run_dir)
    assert "embeddings read from the cache" in (runs[1] / "runner.log").read_text()
    assert "embeddings read from the cache" not in (runs[0] / "runner.log").read_text()
    np.testing.assert_array_equal(stored(runs[0], "embeddings/static"), stored(runs[1], "embeddings/static"))
    assert len(stored(runs[1], "embeddings/loss_curve")) == 1
    # The same choices: everything downstream of the embeddings is the same.
    assert (runs[0] / "selected").is_dir()
    for path in sorted((runs[0] / "selected").iterdir()):
        assert path.read_text() == (runs[1] / "selected" / path.name).read_text()
    assert "embedder training loss" in (runs[1] / "report.html").read_text()


WARM = ("model=mlp", "model.warm_start=true", "model.epochs=3", "model.min_steps=20", "embedder=pixels",
        "acquisition=margin")


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "target"), [("inside", "train:2"), ("after", "train:1")])
def test_a_warm_started_run_killed_in_training_resumes_to_the_same_weights(tmp_path, mode, target):
    from tests.test_cli import KILLER, accuracies, selections

    overrides = (*DIGITS, "loop.rounds=3", *WARM)
    reference = tmp_path / "reference"
    run_in_process(reference, *overrides)
    run_dir = tmp_path / "killed"
    killed = run_cli(mode, target, *overrides, f"hydra.run.dir={run_dir}", python_args=("-c", KILLER))
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run_cli(*overrides, f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert selections(run_dir) == selections(reference)
    assert accuracies(run_dir) == accuracies(reference)
    # Only the last trained round's model is kept for the next one (and the one before it, should a round be redone).
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        kept = sorted(row[0] for row in db.execute("SELECT name FROM blobs WHERE name LIKE 'warm/%'"))
    assert kept == ["warm/002", "warm/003"]


def test_warm_start_changes_what_a_round_learns_from(tmp_path):
    """A warm-started run is not the fresh run under another name: its rounds after the first differ."""
    from tests.test_cli import accuracies

    warm, fresh = tmp_path / "warm", tmp_path / "fresh"
    run_in_process(warm, *DIGITS, *WARM)
    run_in_process(fresh, *DIGITS, *WARM[:1], *WARM[2:])
    assert accuracies(warm)[0] == accuracies(fresh)[0]  # round 0 has no previous model
    assert accuracies(warm)[1:] != accuracies(fresh)[1:]

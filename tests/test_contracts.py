"""Plugins that break their contract are stopped at the stage boundary, with the plugin named."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from scipy.signal import convolve2d

from plugins.sources.dataset import Dataset
from runner import contracts
from runner.app import run
from runner.assemble import Parts
from runner.errors import PluginError
from runner.quality import compute_metrics, metric_set
from runner.store import Store
from tests.conftest import REPO


def composed(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+experiment=digits", "loop.rounds=1", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (np.array([[0.5, np.nan], [0.5, 0.5]]), "contains 1 NaN or infinite values"),
        (np.array([[1.2, -0.2], [0.5, 0.5]]), "negative probabilities"),
        (np.array([[0.6, 0.6], [0.5, 0.5]]), "rows do not sum to 1 (off by up to 0.2)"),
        (np.array([[1.0, 0.0]]), "returned shape (1, 2), expected (2, 2)"),
        ([["a", "b"], ["c", "d"]], "is not a numeric array"),
    ],
)
def test_bad_probabilities_name_the_plugin(probs, message):
    with pytest.raises(PluginError) as err:
        contracts.check_probs(probs, 2, 2, "plugins.models.x.Bad")
    assert str(err.value).startswith("plugins.models.x.Bad: ") and message in str(err.value)


def test_samples_and_scores_are_checked():
    good = np.full((3, 2, 2), 0.5)
    assert contracts.check_samples(good, 3, 2, 2, "m").shape == (3, 2, 2)
    with pytest.raises(PluginError, match=r"expected \(4, 2, 2\)"):
        contracts.check_samples(good, 4, 2, 2, "m")
    with pytest.raises(PluginError, match="acquisition 'x': 1 of 3 scores are NaN"):
        contracts.check_scores(np.array([0.1, np.nan, 0.3]), 3, "acquisition 'x'")
    with pytest.raises(PluginError, match=r"shape \(2,\), expected \(3,\)"):
        contracts.check_scores(np.zeros(2), 3, "acquisition 'x'")


class NaNModel:
    """A model whose probabilities are broken: what a buggy plugin might hand the runner."""

    def fit(self, X, y):
        return self

    def predict_proba(self, X):
        probs = np.full((len(X), 10), 0.1)
        probs[0, 0] = np.nan
        return probs


def test_a_misbehaving_model_stops_the_run_before_anything_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(Parts, "new_model", lambda self, random_state: NaNModel())
    with pytest.raises(PluginError, match="plugins.models.sklearn_model.SklearnClassifier: predict_proba contains"):
        run(composed(), tmp_path, threads=1)
    store = Store(tmp_path / "state.sqlite")
    assert not store.is_done(0, "evaluate")  # the bad stage left nothing behind
    assert store.is_done(0, "train")
    store.close()


def test_a_metric_with_arguments_its_function_does_not_take_is_a_config_error():
    from runner.errors import ConfigError
    bad = {"names": ["area"], "functions": {"area": {"_target_": "plugins.metrics.geometry.area", "unexpected": 1}},
           "scope": {}}
    with pytest.raises(ConfigError, match="metrics.functions.area: partial object"):
        metric_set(bad)


def test_a_metric_that_fails_on_some_items_reports_them_and_goes_on(caplog):
    images = np.random.default_rng(0).random((6, 8, 8)).astype(np.float32)
    images[2, 3, 3] = np.nan  # an unreadable pixel
    data = Dataset(np.array([f"item-{i}" for i in range(6)]), images, np.arange(6) % 2, ["a", "b"])
    metrics = {
        "names": ["brightness", "broken"],
        "functions": {
            "brightness": {"_target_": "plugins.metrics.intensity.brightness"},
            "broken": {"_target_": "plugins.metrics.uniqueness.uniqueness"},
        },
        "scope": {},
    }
    flat_embeddings = np.zeros(6)  # 1-d: uniqueness cannot work on it and raises
    with caplog.at_level(logging.WARNING, logger="runner"):
        columns = compute_metrics(metric_set(metrics), data.images, data.item_ids, data.n_classes, flat_embeddings,
                                  np.arange(6), np.random.default_rng(0))
    assert np.isnan(columns["brightness"][2]) and np.isfinite(np.delete(columns["brightness"], 2)).all()
    np.testing.assert_allclose(np.delete(columns["brightness"], 2), np.delete(images.mean(axis=(1, 2)), 2), rtol=1e-5)
    assert np.isnan(columns["broken"]).all()
    assert "metric 'brightness': 1 items could not be scored (first: item-2)" in caplog.text
    assert "metric 'broken' could not be computed" in caplog.text


def test_image_metrics_read_each_original_at_its_own_size_a_chunk_at_a_time(monkeypatch):
    from runner import quality

    rng = np.random.default_rng(3)
    originals = [(rng.random((h, w)) * 255).astype(np.uint8) for h, w in ((28, 84), (28, 28), (40, 10), (5, 5))]
    resized = np.zeros((4, 8, 8), dtype=np.float32)  # what the model sees: one size for all
    reads: list[int] = []

    def original(i: int) -> np.ndarray:
        reads.append(i)
        return originals[i]

    metrics = metric_set({
        "names": ["aspect_ratio", "area", "sharpness"],
        "functions": {name: {"_target_": f"plugins.metrics.{module}.{name}"} for name, module in
                      (("aspect_ratio", "geometry"), ("area", "geometry"), ("sharpness", "sharpness"))},
        "scope": {},
    })
    ids = np.array([f"item-{i}" for i in range(4)])
    whole = compute_metrics(metrics, resized, ids, 2, None, np.arange(4), rng, original)
    assert whole["aspect_ratio"].tolist() == [3.0, 1.0, 0.25, 1.0]
    assert whole["area"].tolist() == [2352.0, 784.0, 400.0, 25.0]
    # An independent route for sharpness: the variance of scipy's valid 3x3 Laplacian of each original.
    laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
    expected = [convolve2d(o.astype(np.float64), laplacian, mode="valid").var() for o in originals]
    np.testing.assert_allclose(whole["sharpness"], expected, rtol=1e-9)
    assert reads == [0, 1, 2, 3] * 3  # read when needed, never kept

    # Chunks close once they hold 900 pixels: item 0 (2,352) alone, 1 + 2 (784 + 400), then 3 (25).
    monkeypatch.setattr(quality, "ORIGINAL_PIXELS_PER_CHUNK", 900)
    batches: list[list[tuple[int, ...]]] = []

    def recorded(images: list) -> np.ndarray:
        batches.append([image.shape for image in images])
        return area(images)

    from plugins.metrics.geometry import area

    chunked = compute_metrics([quality.Metric("area", recorded, "images", False, ())], resized, ids, 2, None,
                              np.arange(4), rng, original)
    assert batches == [[(28, 84)], [(28, 28), (40, 10)], [(5, 5)]]
    np.testing.assert_array_equal(chunked["area"], whole["area"])

"""Torch models on embedding rows (n, d): the feature MLP, its input scale, MC samples on features, and warm
starts from the previous round's model."""

from __future__ import annotations

import logging
import pickle
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from plugins.models.cnn import GalCNN
from plugins.models.mlp import FeatureMLP, InputScale
from plugins.models.sklearn_model import SklearnClassifier
from plugins.models.torch_model import TorchClassifier
from plugins.protocols import EmbedsItems, SamplesPredictions

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as a run's default: on a busy machine two threads wait on each other at every small step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blobs(n: int = 60, d: int = 16, classes: int = 3, seed: int = 0, spread: float = 0.3) -> tuple[np.ndarray, ...]:
    """Three well-separated clusters of (n, d) float32 rows, and their classes."""
    rng = np.random.default_rng(seed)
    centres = 3 * rng.standard_normal((classes, d))
    labels = np.arange(n) % classes
    rows = centres[labels] + spread * rng.standard_normal((n, d))
    return rows.astype(np.float32), labels


def mlp(**options) -> TorchClassifier:
    module = partial(FeatureMLP, hidden=options.pop("hidden", 32), dropout=options.pop("dropout", 0.5))
    settings = {"n_classes": 3, "random_state": 0, "epochs": 5, "batch_size": 16} | options
    return TorchClassifier(module, **settings)


def weights(model: TorchClassifier) -> dict[str, torch.Tensor]:
    assert model.module_ is not None
    return {key: value.clone() for key, value in model.module_.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


# --- rows in, the shapes out ----------------------------------------------------------------------------------


def test_rows_train_and_predict_with_the_shapes_of_rows():
    rows, labels = blobs()
    seen = []

    def factory(**arguments):
        seen.append(arguments)
        return FeatureMLP(**arguments, hidden=32)

    model = TorchClassifier(factory, n_classes=3, random_state=0, epochs=20, batch_size=16).fit(rows, labels)
    assert seen == [{"n_classes": 3, "input_shape": (16,)}]
    probs = model.predict_proba(rows[:7])
    assert probs.shape == (7, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (probs.argmax(axis=1) == labels[:7]).all()  # three clusters 10 sd apart: learnt
    assert model.embed(rows[:7]).shape == (7, 32)
    assert model.predict_proba_samples(rows[:7], 4).shape == (4, 7, 3)
    assert isinstance(model, SamplesPredictions) and isinstance(model, EmbedsItems)


def test_pixel_shifts_are_refused_on_rows_and_the_mlp_refuses_images():
    rows, labels = blobs()
    with pytest.raises(ValueError, match=r"augment_shift=2 .* \(n, d\) rows"):
        mlp(augment_shift=2).fit(rows, labels)
    with pytest.raises(ValueError, match=r"FeatureMLP takes embedding rows \(n, d\), got items of shape \(1, 4, 4\)"):
        mlp().fit(np.zeros((6, 4, 4), np.float32), np.arange(6) % 3)
    with pytest.raises(ValueError, match="expected rows"):
        mlp().fit(np.zeros(6, np.float32), np.arange(6) % 3)


# --- the input scale --------------------------------------------------------------------------------------------


def test_the_input_scale_centres_the_training_rows_at_unit_variance_per_feature():
    rows = torch.from_numpy(blobs(d=8)[0]) * 50 + 7
    scale = InputScale(8)
    scale.adapt(rows)
    out = scale(rows).double()
    np.testing.assert_allclose(out.mean(dim=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.square().sum(dim=1).mean(), 8.0, rtol=1e-5)
    # One scalar: the ratios between features' spreads are kept, not equalised.
    np.testing.assert_allclose(out.std(dim=0) / rows.double().std(dim=0), float(scale.scale), rtol=1e-4)


@pytest.mark.parametrize("rows", [np.ones((1, 4)), np.full((3, 4), 2.0), np.zeros((2, 4))])
def test_rows_without_spread_keep_scale_one(rows):
    scale = InputScale(4)
    scale.adapt(torch.as_tensor(rows, dtype=torch.float32))
    assert float(scale.scale) == 1.0
    np.testing.assert_array_equal(scale.mean.numpy(), rows.mean(axis=0))


def test_predictions_do_not_depend_on_the_embeddings_scale_or_offset():
    # L2-normalised rows and the same rows 1000 times larger and shifted: the same network after the input scale.
    rows, labels = blobs()
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    large = (1000 * unit + 5).astype(np.float32)
    small_probs = mlp(epochs=10).fit(unit, labels).predict_proba(unit)
    large_probs = mlp(epochs=10).fit(large, labels).predict_proba(large)
    np.testing.assert_allclose(large_probs, small_probs, atol=1e-3)
    unscaled = TorchClassifier(partial(Unscaled, hidden=32), n_classes=3, random_state=0, epochs=10, batch_size=16)
    assert not np.allclose(unscaled.fit(large, labels).predict_proba(large), small_probs, atol=1e-3)


class Unscaled(FeatureMLP):
    """The MLP without its input scale's statistics."""

    def adapt(self, rows: torch.Tensor) -> None:
        pass


# --- MC dropout on features -------------------------------------------------------------------------------------


def test_mc_samples_on_features_differ_and_average_to_probabilities():
    rows, labels = blobs()
    model = mlp(predict_mc_samples=6).fit(rows, labels)
    samples = model.predict_proba_samples(rows, 6)
    assert samples.shape == (6, 60, 3)
    assert not np.allclose(samples[0], samples[1], atol=1e-4)  # each pass draws its own dropout mask
    np.testing.assert_allclose(samples.sum(axis=2), 1.0, atol=1e-6)
    mean = model.predict_proba(rows)
    np.testing.assert_allclose(mean, samples.mean(axis=0), atol=1e-12)  # same seed, same masks
    assert ((mean >= 0) & (mean <= 1)).all()
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(model.predict_proba_samples(rows, 6), samples)  # repeatable


def test_without_dropout_every_sample_is_the_deterministic_prediction():
    rows, labels = blobs()
    model = mlp(dropout=0.0).fit(rows, labels)
    samples = model.predict_proba_samples(rows, 3)
    model.predict_mc_samples = 0
    for draw in samples:
        np.testing.assert_allclose(draw, model.predict_proba(rows), atol=1e-6)


# --- warm starts ------------------------------------------------------------------------------------------------


def test_a_warm_start_begins_at_exactly_the_previous_weights_and_buffers():
    rows, labels = blobs(seed=1)
    previous = mlp(random_state=3).fit(rows[:30], labels[:30])
    grown = np.concatenate([rows, 10 * rows[:5]])  # other rows: a fresh start would fix another input scale
    more = np.concatenate([labels, labels[:5]])
    warm = mlp(random_state=7, epochs=0, warm_start=True).fit(grown, more, warm_from=previous)
    assert same_weights(weights(warm), weights(previous))
    fresh = mlp(random_state=7, epochs=0, warm_start=True).fit(grown, more)
    assert not same_weights(weights(fresh), weights(previous))
    # warm_epochs replaces the schedule of a warm round only.
    zero = mlp(random_state=7, epochs=5, min_steps=50, warm_start=True, warm_epochs=0)
    assert same_weights(weights(zero.fit(grown, more, warm_from=previous)), weights(previous))
    assert not same_weights(weights(zero.fit(grown, more)), weights(previous))


def test_a_warm_start_trains_on_from_the_previous_model_deterministically_without_changing_it():
    rows, labels = blobs()
    previous = mlp(random_state=3).fit(rows, labels)
    before, blob = weights(previous), pickle.dumps(previous)
    first = mlp(random_state=4, warm_start=True).fit(rows, labels, warm_from=previous)
    second = mlp(random_state=4, warm_start=True).fit(rows, labels, warm_from=previous)
    assert same_weights(weights(previous), before)
    assert pickle.dumps(previous) == blob
    assert same_weights(weights(first), weights(second))
    assert not same_weights(weights(first), before)  # it trained
    fresh = mlp(random_state=4, warm_start=True).fit(rows, labels)
    assert not same_weights(weights(first), weights(fresh))
    assert first.module_ is not previous.module_


def test_warm_from_is_ignored_without_warm_start():
    rows, labels = blobs()
    previous = mlp(random_state=3).fit(rows, labels)
    ignored = mlp(random_state=4).fit(rows, labels, warm_from=previous)
    fresh = mlp(random_state=4).fit(rows, labels)
    assert same_weights(weights(ignored), weights(fresh))
    np.testing.assert_array_equal(ignored.predict_proba(rows), fresh.predict_proba(rows))


def test_the_images_model_warm_starts_too():
    images = np.random.default_rng(0).random((12, 12, 12)).astype(np.float32)
    labels = np.arange(12) % 3
    module = partial(GalCNN, filters=4, hidden=8)
    previous = TorchClassifier(module, 3, random_state=1, epochs=1).fit(images, labels)
    warm = TorchClassifier(module, 3, random_state=2, epochs=0, warm_start=True).fit(images, labels, previous)
    assert same_weights(weights(warm), weights(previous))


def fitted(model: TorchClassifier) -> TorchClassifier:
    rows, _ = blobs()
    return model.fit(rows, np.arange(60) % model.n_classes)


def logistic() -> SklearnClassifier:
    from sklearn.linear_model import LogisticRegression

    return SklearnClassifier(LogisticRegression(), n_classes=3)


@pytest.mark.parametrize(
    ("previous", "reason"),
    [
        (lambda: fitted(mlp(n_classes=4)), "the previous model has 4 classes, this one 3"),
        (lambda: fitted(mlp(hidden=16)),
         "the previous module's tensors differ from this one's (first at head.1.weight)"),
        (lambda: mlp(), "the previous model was never fitted"),
        (logistic, "the previous model is a SklearnClassifier, not a TorchClassifier"),
        (lambda: fitted(TorchClassifier(partial(Unscaled, hidden=32), 3, epochs=1)),
         "the previous module is a Unscaled, this one a FeatureMLP"),
    ],
)
def test_an_incompatible_previous_model_gives_a_fresh_start_said_once(caplog, previous, reason):
    rows, labels = blobs()
    old = previous()
    with caplog.at_level(logging.WARNING, logger="runner"):
        model = mlp(random_state=4, warm_start=True).fit(rows, labels, warm_from=old)
    assert [record.getMessage() for record in caplog.records] == [
        f"warm_start: {reason}; this round starts from a fresh initialisation"
    ]
    assert same_weights(weights(model), weights(mlp(random_state=4).fit(rows, labels)))


def test_a_negative_warm_epochs_is_refused():
    with pytest.raises(ValueError, match="warm_epochs"):
        mlp(warm_epochs=-1)


# --- the store's pickles ----------------------------------------------------------------------------------------


def test_a_pickled_model_predicts_the_same_and_warm_starts_the_next():
    rows, labels = blobs()
    model = mlp().fit(rows, labels)
    back = pickle.loads(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    np.testing.assert_array_equal(back.predict_proba(rows), model.predict_proba(rows))
    np.testing.assert_array_equal(back.predict_proba_samples(rows, 3), model.predict_proba_samples(rows, 3))
    np.testing.assert_array_equal(back.embed(rows), model.embed(rows))
    warm = mlp(epochs=0, warm_start=True).fit(rows, labels, warm_from=back)
    assert same_weights(weights(warm), weights(model))


# --- the config files -----------------------------------------------------------------------------------------


def test_the_mlp_config_builds_a_feature_model_that_reads_embeddings():
    node = OmegaConf.load(CONF / "mlp.yaml")
    assert node.pop("input") == "embeddings"  # the runner's key, never the model's
    assert node.warm_start is False and OmegaConf.load(CONF / "cnn.yaml").warm_start is False
    model = instantiate(node, n_classes=3, random_state=0)
    assert isinstance(model, TorchClassifier)
    rows, labels = blobs(n=30, d=128)
    model.fit(rows, labels)
    assert isinstance(model.module_, FeatureMLP)
    assert (model.predict_proba(rows).argmax(axis=1) == labels).all()

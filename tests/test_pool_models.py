"""Model options for label efficiency: learning from the unlabelled pool, MC-dropout prediction, weight decay per
label; and what each model offers the runner (plugins.protocols)."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import torch
from sklearn.svm import SVC

from plugins.errors import InputError
from plugins.models.cnn import GalCNN
from plugins.models.semi_supervised import LabelSpreadingClassifier
from plugins.models.sklearn_model import SklearnClassifier
from plugins.models.torch_model import TorchClassifier
from plugins.protocols import EmbedsItems, PredictsClasses, SamplesPredictions, learns_from_pool
from runner import stages
from tests.conftest import run_in_process


def two_moons_of_blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two chains of points, 1 unit apart inside a chain and 4 apart between chains: neighbours share a class."""
    rng = np.random.default_rng(seed)
    chain = np.arange(30, dtype=np.float64)
    first = np.stack([chain, np.zeros(30)], axis=1)
    second = np.stack([chain[::-1], np.full(30, 4.0)], axis=1)
    points = np.concatenate([first, second]) + 0.01 * rng.standard_normal((60, 2))
    return points.reshape(60, 1, 2), np.repeat([0, 1], 30)


def test_label_spreading_labels_whole_chains_from_one_label_each():
    images, truth = two_moons_of_blobs()
    labelled = np.array([0, 30])  # one end of each chain
    pool = np.setdiff1d(np.arange(60), labelled)
    model = LabelSpreadingClassifier(n_classes=3, n_components=2, n_neighbors=3, alpha=0.9, max_iter=1000).fit(
        images[labelled], truth[labelled], unlabeled=images[pool]
    )
    probs = model.predict_proba(images)
    assert probs.shape == (60, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert (probs[:, 2] == 0).all()  # no label of class 2 anywhere
    # Along a chain the far end is 29 steps from the label and 4 from the other chain's points: only the
    # unlabelled pool carries the label there. Without it, every item takes its nearest labelled point's class.
    assert (probs.argmax(axis=1) == truth).all()
    alone = LabelSpreadingClassifier(n_classes=3, n_components=2, n_neighbors=1).fit(images[labelled], truth[labelled])
    far_end = np.array([29, 59])
    assert (alone.predict_proba(images[far_end]).argmax(axis=1) != truth[far_end]).any()


def test_label_spreading_refuses_bad_settings():
    with pytest.raises(ValueError, match="alpha must be in"):
        LabelSpreadingClassifier(n_classes=2, alpha=1.0)


class Plain:
    def fit(self, X, y):
        self.seen = (len(X), None)
        return self


class UsesPool:
    def fit(self, X, y, unlabeled=None):
        self.seen = (len(X), None if unlabeled is None else len(unlabeled))
        return self


@pytest.mark.parametrize(("model", "expected"), [(Plain(), (3, None)), (UsesPool(), (3, 5))])
def test_train_gives_the_pool_only_to_a_fit_that_takes_it(model, expected):
    asked = []

    def pool() -> np.ndarray:
        asked.append(True)
        return np.zeros((5, 2, 2))

    stages.train(model, np.zeros((3, 2, 2)), np.array([0, 1, 0]), 0, "model", unlabeled=pool)
    assert model.seen == expected
    assert bool(asked) == (expected[1] is not None)  # the pool's images are not gathered for a plain model


def test_label_spreading_run_sees_the_pool(tmp_path):
    summary = run_in_process(tmp_path, "+experiment=digits", "model=label_spreading", "acquisition=margin",
                             "loop.rounds=1", "selection.budget=10")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # 20 labels reach far more than logistic regression's ~0.7 on digits only because the pool's 1,480
    # unlabelled images carry the labels along their neighbourhoods.
    assert rows[0]["n_labeled"] == 20 and rows[0]["test_accuracy"] > 0.85
    assert summary["model"] == "plugins.models.semi_supervised.LabelSpreadingClassifier"


def cnn(**options) -> TorchClassifier:
    module = partial(GalCNN, filters=4, hidden=8, **options.pop("dropout", {}))
    return TorchClassifier(module, n_classes=3, random_state=0, epochs=1, batch_size=8, **options)


def data(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 12, 12)).astype(np.float32), np.arange(n) % 3


def test_mc_prediction_is_the_deterministic_one_without_dropout():
    images, labels = data()
    no_dropout = {"conv_dropout": 0.0, "dense_dropout": 0.0}
    plain = cnn(dropout=no_dropout).fit(images, labels)
    averaged = cnn(dropout=no_dropout, predict_mc_samples=5).fit(images, labels)
    np.testing.assert_allclose(averaged.predict_proba(images), plain.predict_proba(images), atol=1e-6)


def test_mc_prediction_averages_dropout_passes():
    images, labels = data()
    model = cnn(predict_mc_samples=7).fit(images, labels)
    probs = model.predict_proba(images)
    np.testing.assert_allclose(probs, model.predict_proba_samples(images, 7).mean(axis=0), atol=1e-12)
    model.predict_mc_samples = 0
    assert not np.allclose(probs, model.predict_proba(images), atol=1e-4)  # dropout changed something
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(("per_label", "expected"), [(False, 3.0), (True, 3.0 / 12)])
def test_weight_decay_per_label_divides_by_the_labelled_count(monkeypatch, per_label, expected):
    seen = []
    original = torch.optim.Adam

    def adam(params, **kwargs):
        seen.append(kwargs["weight_decay"])
        return original(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", adam)
    images, labels = data(12)
    cnn(weight_decay=3.0, weight_decay_per_label=per_label).fit(images, labels)
    assert seen == [pytest.approx(expected)]


def test_shift_augmentation_moves_each_image_by_its_own_offset_with_zeros_shifted_in():
    from plugins.models.torch_model import _shifted

    images = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).reshape(2, 1, 4, 5) + 1  # no zero pixels
    assert _shifted(images, 0, torch.Generator().manual_seed(0)) is images
    moved = _shifted(images, 1, torch.Generator().manual_seed(3))
    assert moved.shape == images.shape
    for original, out in zip(images, moved, strict=True):
        # By hand: the 9 placements of the image inside a one-pixel zero frame, cut back to 4 x 5.
        framed = torch.zeros(1, 6, 7)
        framed[:, 1:5, 1:6] = original
        placements = [framed[:, dy : dy + 4, dx : dx + 5] for dy in range(3) for dx in range(3)]
        assert sum(bool(torch.equal(out, p)) for p in placements) == 1
    draws = {tuple(_shifted(images, 2, torch.Generator().manual_seed(s))[0].flatten().tolist()) for s in range(20)}
    assert len(draws) > 5  # offsets are drawn, not fixed


def test_shift_augmentation_is_seeded_and_refuses_negative_shifts():
    images = np.random.default_rng(0).random((12, 8, 8)).astype(np.float32)
    labels = np.arange(12) % 3

    def fitted(seed: int) -> np.ndarray:
        model = TorchClassifier(partial(GalCNN, filters=4, hidden=8), 3, random_state=seed, epochs=2,
                                augment_shift=1)
        return model.fit(images, labels).predict_proba(images)

    np.testing.assert_array_equal(fitted(0), fitted(0))
    with pytest.raises(ValueError, match="augment_shift"):
        TorchClassifier(partial(GalCNN), 3, augment_shift=-1)


# --- what the runner may ask of each model (plugins.protocols) ----------------------------------------------


def test_learns_from_pool_reads_whether_fit_takes_the_pool():
    assert learns_from_pool(UsesPool()) and learns_from_pool(LabelSpreadingClassifier(n_classes=2))
    assert not learns_from_pool(Plain()) and not learns_from_pool(cnn()) and not learns_from_pool(object())


def test_capabilities_are_what_each_model_offers():
    spreading, network = LabelSpreadingClassifier(n_classes=2), cnn()
    assert isinstance(network, SamplesPredictions) and isinstance(network, EmbedsItems)
    assert isinstance(spreading, EmbedsItems) and not isinstance(spreading, SamplesPredictions)
    assert not isinstance(network, PredictsClasses) and not isinstance(spreading, PredictsClasses)


class Hidden(torch.nn.Module):
    """The same network with its trunk and head out of sight, so it is sampled by full stochastic passes."""

    def __init__(self, **arguments) -> None:
        super().__init__()
        self.inner = GalCNN(**arguments)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_sampling_only_the_head_gives_the_draws_of_full_passes():
    images, labels = data()
    split = cnn().fit(images, labels)
    full = TorchClassifier(partial(Hidden, filters=4, hidden=8), n_classes=3, random_state=0, epochs=1, batch_size=8)
    full.fit(images, labels)
    full.module_.inner.load_state_dict(split.module_.state_dict())
    # The trunk holds no dropout, so both ways draw the same masks from the same seed, in the same order.
    np.testing.assert_allclose(full.predict_proba_samples(images, 4), split.predict_proba_samples(images, 4),
                               rtol=1e-6, atol=1e-7)


def test_an_estimator_whose_settings_rule_out_probabilities_is_refused():
    # SVC hides predict_proba unless probability=True: the attribute exists on the class, not on this estimator.
    with pytest.raises(InputError, match="model.estimator: SVC has no predict_proba"):
        SklearnClassifier(SVC(probability=False), n_classes=10)
    model = SklearnClassifier(SVC(probability=True), n_classes=10)
    assert isinstance(model, PredictsClasses) and isinstance(model, EmbedsItems)
    assert not isinstance(model, SamplesPredictions)

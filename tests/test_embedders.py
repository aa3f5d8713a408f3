"""Pixel PCA against a direct SVD, and the errors for missing pretrained weights."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.embedders import pixels
from plugins.embedders.model import ModelEmbedding
from plugins.embedders.pixels import PixelPCA
from plugins.embedders.pretrained import LocalWeights, check_available
from plugins.errors import InputError
from plugins.metrics.uniqueness import uniqueness
from plugins.protocols import Embedder, ModelEmbedder, spreads_blocks


def test_pca_shape_and_fewer_components_for_small_data():
    rng = np.random.default_rng(0)
    assert PixelPCA().fit_transform(rng.random((120, 28, 28), dtype=np.float32)).shape == (120, 50)
    assert PixelPCA(n_components=50).fit_transform(rng.random((12, 6, 6), dtype=np.float32)).shape == (12, 12)
    assert PixelPCA(n_components=50).fit_transform(rng.random((80, 3, 3), dtype=np.float32)).shape == (80, 9)
    colour = rng.random((30, 4, 4, 3), dtype=np.float32)
    assert PixelPCA(n_components=5).fit_transform(colour).shape == (30, 5)


@pytest.mark.parametrize(
    ("shape", "solver"),
    [((300, 8, 8), "covariance_eigh"), ((40, 8, 8), "full"), ((100, 16, 16), "randomized")],
)
def test_pca_is_deterministic_for_a_seed(shape, solver, monkeypatch):
    # A lower EXACT_MAX_RANK sends a small input to the randomized solver, the one that draws numbers.
    monkeypatch.setattr(pixels, "EXACT_MAX_RANK", 50)
    assert pixels.pca_solver(shape[0], shape[1] * shape[2]) == solver
    images = np.random.default_rng(1).random(shape, dtype=np.float32)
    first = PixelPCA(20, random_state=4).fit_transform(images)
    second = PixelPCA(20, random_state=4).fit_transform(images)
    np.testing.assert_array_equal(first, second)


def test_pca_solver_choice():
    assert pixels.pca_solver(60_000, 784) == "covariance_eigh"
    assert pixels.pca_solver(120, 784) == "full"
    assert pixels.pca_solver(5_000, 64 * 64 * 3) == "randomized"


def test_pca_matches_a_direct_svd_up_to_sign():
    images = np.random.default_rng(2).random((40, 5, 4)).astype(np.float32)
    x = images.reshape(40, -1).astype(np.float64)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:6].T
    got = PixelPCA(6).fit_transform(images).astype(np.float64)
    signs = np.sign((got * expected).sum(axis=0))
    np.testing.assert_allclose(got * signs, expected, atol=1e-4)


def test_pca_duplicates_and_non_finite_images():
    images = np.random.default_rng(3).random((50, 6, 6)).astype(np.float32)
    images[10] = images[3]
    images[7, 1, 1] = np.nan
    out = PixelPCA(8).fit_transform(images)
    np.testing.assert_array_equal(out[10], out[3])
    assert np.isnan(out[7]).all() and np.isfinite(np.delete(out, 7, axis=0)).all()
    # Exact duplicate images stay exact duplicates downstream: the later copy scores 0.
    scores = uniqueness(out)
    assert scores[10] == 0.0 and scores[3] > 0 and np.isnan(scores[7])
    with pytest.raises(ValueError, match="ragged"):
        PixelPCA().fit_transform([np.zeros((2, 2)), np.zeros((3, 3))])
    with pytest.raises(ValueError, match="n_components"):
        PixelPCA(0)


def test_missing_weights_are_one_line_naming_the_key_and_file(tmp_path):
    missing = tmp_path / "clip-vit-b32.pt2"
    with pytest.raises(InputError, match="clip-vit-b32.pt2") as caught:
        check_available(str(missing))
    assert str(caught.value).startswith("embedder.weights_path: ") and "\n" not in str(caught.value)
    with pytest.raises(InputError, match="does not exist"):
        LocalWeights(str(missing))
    with pytest.raises(InputError, match="is a directory"):
        check_available(str(tmp_path))


@pytest.mark.slow
def test_local_weights_embed_with_an_exported_network(tmp_path):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    program = torch.export.export(
        net, (torch.zeros(4, 1, 4, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    path = tmp_path / "encoder.pt2"
    torch.export.save(program, str(path))
    check_available(str(path))
    images = np.random.default_rng(0).random((5, 4, 4)).astype(np.float32)
    out = LocalWeights(str(path), batch_size=2).fit_transform(images)
    with torch.no_grad():
        expected = net(torch.from_numpy(images[:, None])).numpy()
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_a_fixed_batch_export_gets_padded_batches_and_a_colour_encoder_gets_three_channels(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(4, 3, 4, 4),)), str(path))  # exactly 4 images
    images = np.random.default_rng(1).random((7, 4, 4)).astype(np.float32)  # 4 + 3: the last batch is short
    out = LocalWeights(str(path), batch_size=256).fit_transform(images)
    with torch.no_grad():
        expected = net(torch.from_numpy(np.repeat(images[:, None], 3, axis=1))).numpy()
    assert out.shape == (7, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_an_encoder_for_another_image_size_or_another_file_is_refused_in_one_line(tmp_path):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(4, 3, 4, 4),)), str(path))
    with pytest.raises(InputError) as caught:
        LocalWeights(str(path)).fit_transform(np.zeros((2, 5, 5), dtype=np.float32))
    message = str(caught.value)
    assert message.startswith("embedder.weights_path: ") and "(4, 3, 4, 4)" in message and "(3, 5, 5)" in message
    assert "\n" not in message and "image_size" in message
    other = tmp_path / "weights.bin"
    other.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="is not a torch.export program"):
        LocalWeights(str(other))


# --- embeddings from the model ------------------------------------------------------------------------------


class Doubles:
    """A model with a representation of its own: each image's pixels, doubled."""

    def embed(self, X: np.ndarray) -> np.ndarray:
        return 2 * np.asarray(X, dtype=np.float32).reshape(len(X), -1)


def test_model_embedding_asks_a_model_that_embeds_and_otherwise_leaves_it_to_the_fallback():
    embedder = ModelEmbedding(PixelPCA(n_components=2))
    assert isinstance(embedder, ModelEmbedder)
    images = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    rows = embedder.embed_with(Doubles(), images)
    assert rows.dtype == np.float64 and rows.tolist() == [[0.0, 2.0, 4.0, 6.0], [8.0, 10.0, 12.0, 14.0]]
    assert embedder.embed_with(None, images) is None  # no model trained yet
    assert embedder.embed_with(object(), images) is None  # a model without embed


def test_model_embedding_refuses_a_fallback_that_cannot_embed():
    with pytest.raises(TypeError, match="embedder.fallback must be an embedder with fit_transform"):
        ModelEmbedding(Doubles())  # type: ignore[arg-type]


def test_only_an_embedder_whose_fit_transform_takes_map_blocks_gets_the_blocks():
    class Plain:
        def fit_transform(self, images: np.ndarray) -> np.ndarray:
            return np.zeros((len(images), 1))

    assert spreads_blocks(PixelPCA()) and not spreads_blocks(Plain()) and not spreads_blocks(object())
    assert isinstance(Plain(), Embedder) and not isinstance(Doubles(), Embedder)

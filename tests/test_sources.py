"""Offline sources: IDX parsing against bytes built by hand, Fashion-MNIST when Debian's package is there."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from plugins.errors import InputError
from plugins.sources.offline import FASHION_MNIST_ROOT, digits, fashion_mnist, mnist, read_idx


def test_read_idx_of_a_hand_built_file(tmp_path):
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = b"\x00\x00\x08\x03" + struct.pack(">III", 2, 3, 4) + pixels.tobytes()
    (tmp_path / "plain").write_bytes(raw)
    (tmp_path / "packed.gz").write_bytes(gzip.compress(raw))
    assert np.array_equal(read_idx(tmp_path / "plain"), pixels)
    assert np.array_equal(read_idx(tmp_path / "packed.gz"), pixels)
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "short")


def test_missing_fashion_mnist_names_the_package(tmp_path):
    with pytest.raises(InputError, match="install Debian's dataset-fashion-mnist"):
        fashion_mnist(str(tmp_path))


@pytest.mark.slow
@pytest.mark.skipif(not Path(FASHION_MNIST_ROOT).is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_has_its_own_split():
    data = fashion_mnist()
    assert data.images.shape == (70000, 28, 28) and data.images.dtype == np.float32
    assert (data.split == "pool").sum() == 60000 and (data.split == "test").sum() == 10000
    assert np.bincount(data.labels).tolist() == [7000] * 10
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0


@pytest.mark.slow
def test_embedded_sources_are_complete_and_scaled():
    m, d = mnist(), digits()
    assert m.images.shape == (5000, 28, 28) and np.bincount(m.labels).tolist() == [500] * 10
    assert d.images.shape == (1797, 8, 8) and d.images.max() == 1.0
    assert len(set(m.item_ids)) == 5000 and m.split is None


def idx_bytes(values: np.ndarray) -> bytes:
    header = b"\x00\x00\x08" + bytes([values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape)
    return gzip.compress(header + values.astype(np.uint8).tobytes())


def test_fashion_mnist_pool_subset_keeps_every_test_image_and_item_ids(tmp_path):
    # 12 pool images whose every pixel is the image's own number; 3 test images numbered 100..102.
    train = np.repeat(np.arange(12), 4).reshape(12, 2, 2)
    test = np.repeat(np.arange(100, 103), 4).reshape(3, 2, 2)
    for name, values in [("train-images-idx3-ubyte.gz", train), ("train-labels-idx1-ubyte.gz", np.arange(12) % 10),
                         ("t10k-images-idx3-ubyte.gz", test), ("t10k-labels-idx1-ubyte.gz", np.arange(3))]:
        (tmp_path / name).write_bytes(idx_bytes(np.asarray(values)))
    data = fashion_mnist(str(tmp_path), pool_size=5, pool_seed=3)
    kept = np.sort(np.random.default_rng(3).choice(12, size=5, replace=False))
    assert data.split.tolist() == ["pool"] * 5 + ["test"] * 3
    np.testing.assert_allclose(data.images[:, 0, 0] * 255, [*kept, 100, 101, 102], atol=1e-4)
    assert data.item_ids.tolist() == [f"fashion-{i:05d}" for i in [*kept, 12, 13, 14]]
    assert data.labels.tolist() == [*(kept % 10), 0, 1, 2]
    assert fashion_mnist(str(tmp_path)).item_ids.tolist() == [f"fashion-{i:05d}" for i in range(15)]
    with pytest.raises(InputError, match="pool_size=13 must be between 1 and 12"):
        fashion_mnist(str(tmp_path), pool_size=13)

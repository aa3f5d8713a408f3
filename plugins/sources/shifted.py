"""A pool of any size up to millions: Fashion-MNIST items with seeded small shifts and pixel noise.

Item i of a pool of ``n`` is one Fashion-MNIST image (training images for the pool, test images for the last
``test_size`` items) moved by up to ``max_shift`` pixels in each direction and given Gaussian pixel noise of
standard deviation ``noise`` (on the 0..1 scale), its label that image's label. Everything is drawn from
``seed`` block by block (``BLOCK_ITEMS`` items per block, each block from its own generator), so the same
arguments give the same pool on any machine and no block needs another in memory.

The pool is written once to ``cache_dir`` as a uint8 ``.npy`` (784 bytes per 28x28 item) plus its labels, under
a name made of every argument, and read back memory-mapped (:class:`~plugins.sources.dataset.StoredImages`).
Writing is atomic: an interrupted write leaves no file under the final name.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import cast

import numpy as np

from plugins.arrays import Array
from plugins.errors import InputError
from plugins.files import atomic_write, save_npy
from plugins.sources.dataset import Dataset, StoredImages
from plugins.sources.offline import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, read_idx

BLOCK_ITEMS = 16384
# What a run of metrics=quality plus an uncertainty round holds per item at its peak (images mapped as bytes,
# float32 embeddings, the float64 copies the embedding metrics and the neighbour index make, ids and scores),
# measured at 100,000 and 1,000,000 items (benchmarks/scale.md), plus what the interpreter and libraries take.
MEMORY_PER_ITEM = 3200
MEMORY_BASE = 600 * 2**20
VERSION = 1


def shifted_fashion_mnist(
    n: int,
    seed: int,
    cache_dir: str,
    test_size: int = 10000,
    max_shift: int = 2,
    noise: float = 0.05,
    root: str = FASHION_MNIST_ROOT,
) -> Dataset:
    """``n`` items, the last ``test_size`` of them the test split; built on first use, then read from the cache."""
    n, test_size, max_shift = int(n), int(test_size), int(max_shift)
    if n < 2:
        raise InputError(f"project.source.n={n}: a pool needs at least 2 items")
    if not 0 < test_size < n:
        raise InputError(f"project.source.test_size={test_size} must be between 1 and n - 1 ({n - 1})")
    if not 0 <= max_shift <= 8:
        raise InputError(f"project.source.max_shift={max_shift} must be between 0 and 8 pixels")
    if not 0 <= float(noise) <= 1:
        raise InputError(f"project.source.noise={noise} must be between 0 and 1")
    check_memory(n)
    folder = Path(cache_dir)
    name = f"shifted_fashion_mnist-v{VERSION}-n{n}-test{test_size}-seed{seed}-shift{max_shift}-noise{float(noise):g}"
    images_path, labels_path = folder / f"{name}.images.npy", folder / f"{name}.labels.npy"
    if not (images_path.is_file() and labels_path.is_file()):
        base = _fashion(root)
        folder.mkdir(parents=True, exist_ok=True)
        check_disk(folder, n * 28 * 28)
        labels = np.empty(n, dtype=np.int8)
        atomic_write(images_path, lambda tmp: _write_pool(tmp, labels, base, test_size, int(seed), max_shift,
                                                          float(noise)))
        atomic_write(labels_path, lambda tmp: save_npy(tmp, labels))
    labels = np.load(labels_path, allow_pickle=False)
    images = StoredImages(images_path)
    if len(images) != n or len(labels) != n:
        raise InputError(f"project.source.cache_dir: {images_path} holds {len(images)} items, not {n}; remove it")
    split = np.full(n, "pool", dtype="<U4")
    split[n - test_size :] = "test"
    ids = np.char.add("shifted-", np.char.zfill(np.arange(n).astype(str), len(str(n - 1))))
    # Dataset.images is typed as the array the runner indexes; StoredImages indexes the same way (see Dataset).
    pixels = cast(Array, images)
    return Dataset(ids, pixels, labels.astype(np.int64), list(FASHION_MNIST_CLASSES), split=split)


def check_memory(n: int) -> None:
    """Refuse, before anything is built, a pool this machine cannot hold, naming the memory it would need."""
    need = MEMORY_BASE + n * MEMORY_PER_ITEM
    available = _available_memory()
    if available is not None and need > available:
        raise InputError(
            f"project.source.n={n:,} needs about {need / 2**30:.1f} GiB of memory for one round and this "
            f"machine has {available / 2**30:.1f} GiB available; lower n or use a larger machine"
        )


def check_disk(folder: Path, size: int) -> None:
    free = shutil.disk_usage(folder).free
    if size > free:
        raise InputError(f"project.source.cache_dir: the pool needs {size / 2**30:.1f} GiB on disk and "
                         f"{folder} has {free / 2**30:.1f} GiB free")


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _fashion(root: str) -> dict[str, Array]:
    folder = Path(root)
    names = {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
             "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}
    missing = [f for f in names.values() if not (folder / f).is_file()]
    if missing:
        raise InputError(
            f"project.source.root: {folder} lacks {missing[0]}; install Debian's dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist) or point project.source.root at the IDX files"
        )
    return {key: read_idx(folder / file) for key, file in names.items()}


def _write_pool(path: str, labels: Array, base: dict[str, Array], test_size: int, seed: int,
                max_shift: int, noise: float) -> None:
    """Write the images block by block into ``path``, and their labels into ``labels``."""
    n = len(labels)
    pixels = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 28, 28))
    pool_items = n - test_size
    for block, start in enumerate(range(0, n, BLOCK_ITEMS)):
        stop = min(start + BLOCK_ITEMS, n)
        rng = np.random.default_rng([seed, block])
        # Pool items come from the training images, test items from the test images: never the same photo.
        is_test = np.arange(start, stop) >= pool_items
        kind = np.where(is_test, "test", "train")
        images = np.empty((stop - start, 28, 28), dtype=np.uint8)
        for part in ("train", "test"):
            rows = np.flatnonzero(kind == part)
            source = rng.integers(0, len(base[f"{part}_labels"]), len(rows))
            images[rows] = base[f"{part}_images"][source]
            labels[start + rows] = base[f"{part}_labels"][source]
        shifts = rng.integers(-max_shift, max_shift + 1, size=(stop - start, 2))
        moved = _shift(images, shifts)
        noisy = moved.astype(np.float32) + rng.standard_normal(moved.shape, dtype=np.float32) * np.float32(255 * noise)
        pixels[start:stop] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    pixels.flush()
    del pixels


def _shift(images: Array, shifts: Array) -> Array:
    """Each image moved by its (rows, columns) shift, the uncovered border filled with 0 (the background)."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    for dy, dx in np.unique(shifts, axis=0):
        rows = np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx))
        moved = np.zeros_like(images[rows])
        moved[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = \
            images[rows][:, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
        out[rows] = moved
    return out

"""The one shape every data source returns."""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plugins.arrays import Array

DATASET_KINDS = ("images", "embeddings")


@dataclass(frozen=True)
class Dataset:
    """Items of one project.

    ``images`` are float32 in [0, 1], shape (n, H, W) for grayscale or (n, H, W, C) for colour: an array, or
    for pools too large to hold, :class:`StoredImages`, which reads them from disk a slice at a time.
    ``labels`` hold the class index of each item, or -1 where no label exists (the pool of a real project;
    in simulation every item has its truth here and the oracle reveals it on selection).
    ``split`` is ``"pool"`` or ``"test"`` per item when the source has its own split, else None (the runner
    then splits by seed).
    ``original``, for a source whose ``images`` were resized to the model's input: item index -> that item's image
    at its own size (uint8 or float in [0, 1]), read when image-level metrics need it, so the originals never all
    sit in memory at once. None: ``images`` are the originals.
    ``kind``: ``"images"``, or ``"embeddings"`` for a source whose items are vectors: ``images`` then holds one
    float32 row per item, (n, d), on no fixed scale, and there are no pixels for image metrics or encoders.
    ``skipped``: (file, reason) for each input the source could not use (an unreadable image, a manifest row
    naming no file), for the run directory's ``skipped_files.csv``; empty for sources that skip nothing.
    """

    item_ids: Array
    images: Array
    labels: Array
    class_names: list[str]
    split: Array | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    original: Callable[[int], Array] | None = None
    kind: str = "images"
    skipped: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in DATASET_KINDS:
            raise ValueError(f"dataset kind '{self.kind}' is not one of {', '.join(DATASET_KINDS)}")
        n = len(self.item_ids)
        if len(self.images) != n or len(self.labels) != n:
            raise ValueError(
                f"dataset arrays disagree in length: {n} ids, {len(self.images)} images, {len(self.labels)} labels"
            )
        if self.split is not None and len(self.split) != n:
            raise ValueError(f"dataset split has {len(self.split)} entries for {n} items")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


class StoredImages:
    """Images kept on disk as uint8 (an ``.npy`` file, memory-mapped) and handed out as float32 in [0, 1].

    Indexing (``images[a:b]``, ``images[positions]``) reads only those items, so a pool of a million 28x28
    images (784 MB as bytes, 3.1 GB as float32) is never in memory at once. It pickles as its path, so a
    task on another process or machine opens the same file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._pixels = np.load(self.path, mmap_mode="r", allow_pickle=False)
        if self._pixels.dtype != np.uint8 or self._pixels.ndim not in (3, 4):
            raise ValueError(f"{self.path}: expected uint8 images (n, H, W[, C]), got {self._pixels.dtype} "
                             f"{self._pixels.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._pixels.shape)

    @property
    def ndim(self) -> int:
        return int(self._pixels.ndim)

    @property
    def dtype(self) -> np.dtype[np.float32]:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self._pixels)

    def __iter__(self) -> Iterator[Array]:
        """One item at a time, as indexing by position hands it out."""
        return (self[i] for i in range(len(self)))

    def __getitem__(self, key: Any) -> Array:
        out = np.asarray(self._pixels[key], dtype=np.float32)
        out *= np.float32(1 / 255)
        self._release()
        return out

    def _release(self) -> None:
        """Drop the pages just read from this process's resident memory; the file stays in the page cache.

        Mapped file pages count towards a process's resident set until released: without this, one pass over
        a million 28x28 items would leave 784 MB resident for the rest of the run.
        """
        mapping = getattr(self._pixels, "_mmap", None)
        if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
            mapping.madvise(mmap.MADV_DONTNEED)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Array:
        return self[:] if dtype is None else self[:].astype(dtype)

    def __getstate__(self) -> dict[str, str]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

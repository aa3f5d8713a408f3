"""Static embeddings kept between runs, keyed by the images' content and the embedder's identity.

Training an encoder on the pool (``embedder=self_supervised``) or running a pretrained network over it costs
minutes; every seed and strategy of a sweep, a resumed run and a re-run of the same project would otherwise pay
it again. An embedder whose class sets ``worth_caching = True`` has its rows (and its training loss curve, where
it keeps one) stored under ``compute.embedding_cache`` as ``KEY.npz``, where KEY is the SHA-256 of

- the images as the embedder sees them (every pixel, in item order, and the array's shape),
- the embedder's config node, with the content of every file it names (a weights file edited in place is a
  new encoder), and the versions of the libraries that compute it.

An entry is written to a temporary file and renamed, under a lock file, so parallel jobs of a sweep compute
an entry once: the second waits for the first and reads its result.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("runner")
# Items hashed at once: bounded memory on any pool.
HASH_CHUNK = 8192
# Libraries whose version can change what an embedder computes.
EMBEDDING_LIBRARIES = ("numpy", "torch", "scikit-learn", "onnxruntime")


@dataclass(frozen=True)
class Cached:
    vectors: np.ndarray
    loss_curve: np.ndarray | None


def worth_caching(embedder: Any) -> bool:
    return bool(getattr(type(embedder), "worth_caching", False))


def images_digest(images: Any) -> str:
    """SHA-256 of every pixel (as float32, item order) and of the array's shape, read a chunk at a time."""
    digest = hashlib.sha256(repr(tuple(images.shape)).encode())
    for start in range(0, len(images), HASH_CHUNK):
        digest.update(np.ascontiguousarray(images[start:start + HASH_CHUNK], dtype=np.float32).tobytes())
    return digest.hexdigest()


def embedder_identity(node: Mapping[str, Any]) -> str:
    """SHA-256 of the embedder's config node, the content of each file it names, and the library versions."""
    digest = hashlib.sha256(json.dumps(node, sort_keys=True, default=str).encode())
    for value in _strings(node):
        path = Path(value).expanduser()
        if path.is_file():
            digest.update(_file_digest(path).encode())
    digest.update(json.dumps({name: _version(name) for name in EMBEDDING_LIBRARIES}, sort_keys=True).encode())
    return digest.hexdigest()


class EmbeddingCache:
    """The entries of one directory for one embedder (``identity``: :func:`embedder_identity`)."""

    def __init__(self, directory: str | Path, identity: str) -> None:
        self.directory = Path(directory).expanduser()
        self.identity = identity

    def key(self, images: Any) -> str:
        return hashlib.sha256(f"{self.identity}:{images_digest(images)}".encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    @contextlib.contextmanager
    def held(self, key: str) -> Iterator[None]:
        """Exclusive use of the entry ``key`` by this process while it is read or computed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"{key}.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self, key: str, n_items: int) -> Cached | None:
        """The entry, or None when absent or unreadable (a damaged entry is computed again, never trusted)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as entry:
                vectors = np.asarray(entry["vectors"])
                curve = np.asarray(entry["loss_curve"]) if "loss_curve" in entry.files else None
        except (OSError, ValueError, KeyError) as exc:
            log.warning(f"embedding cache: {path} is unreadable ({exc}); computing it again")
            return None
        if vectors.ndim != 2 or len(vectors) != n_items:
            log.warning(f"embedding cache: {path} holds {vectors.shape}, not {n_items} rows; computing it again")
            return None
        log.info(f"embeddings read from the cache: {path}")
        return Cached(vectors, curve)

    def save(self, key: str, entry: Cached) -> None:
        path = self.path(key)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as handle:
                if entry.loss_curve is None:
                    np.savez(handle, vectors=entry.vectors)
                else:
                    np.savez(handle, vectors=entry.vectors, loss_curve=entry.loss_curve)
            os.replace(temporary, path)
        except OSError as exc:  # a full or read-only disk costs the next run time, not this run its result
            log.warning(f"embedding cache: could not write {path} ({exc})")
            temporary.unlink(missing_ok=True)
            return
        log.info(f"embeddings cached: {path}")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _strings(value)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

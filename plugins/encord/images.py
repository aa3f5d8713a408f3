"""Images of a project: a content-addressed cache, parallel downloads with retries, decoding."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

from plugins.arrays import Array
from plugins.encord.errors import EncordError
from plugins.encord.retry import Retry
from plugins.files import atomic_write_text

# Nothing here is a config _target_: these are the package's helpers (see runner.targets).
__all__ = []


def fetch_url(url: str, timeout: float = 60.0) -> bytes:
    """Bytes behind a signed URL (https, or file:// for exports on disk). No credentials travel with it."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - URLs come from the SDK
        # typeshed types urlopen's response as Any; an http or file response reads as bytes.
        data: bytes = response.read()
        return data


class ImageCache:
    """Content-addressed image files ``objects/ab/<sha256>`` and ``index.json`` (data hash -> sha256).

    Identical images are stored once, a half-written file never gets a name (atomic rename), and a re-run
    downloads only the data hashes the index lacks.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.index_path = self.root / "index.json"
        self.index: dict[str, str] = {}
        if self.index_path.exists():
            try:
                self.index = json.loads(self.index_path.read_text(encoding="utf-8"))
            except ValueError:  # a cache is only a cache: a damaged index means fetching again
                self.index = {}

    def path(self, digest: str) -> Path:
        return self.root / "objects" / digest[:2] / digest

    def has(self, data_hash: str) -> bool:
        digest = self.index.get(data_hash)
        return digest is not None and self.path(digest).exists()

    def put(self, data_hash: str, content: bytes) -> None:
        digest = hashlib.sha256(content).hexdigest()
        target = self.path(digest)
        if not target.exists():
            # Rename makes the file appear whole; no fsync per image (thousands of them), because a file
            # lost in a crash is simply missing from the index written afterwards, and fetched again.
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(content)
            os.replace(tmp, target)
        self.index[data_hash] = digest

    def read(self, data_hash: str) -> bytes:
        return self.path(self.index[data_hash]).read_bytes()

    def save_index(self) -> None:
        atomic_write_text(self.index_path, json.dumps(self.index, sort_keys=True, indent=0))


def download_images(
    links: dict[str, str | None],
    cache: ImageCache,
    workers: int = 4,
    retry: Retry | None = None,
    fetch: Callable[[str], bytes] = fetch_url,
) -> None:
    """Fetch the images the cache lacks, ``workers`` at a time; raise one line naming what still failed."""
    retry = retry or Retry(attempts=3, base_delay=0.5)
    missing = [h for h in links if not cache.has(h)]
    if not missing:
        return
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        futures = {}
        for data_hash in missing:
            url = links[data_hash]
            if not url:
                failures[data_hash] = "no signed URL (the row has no storage item)"
                continue
            futures[pool.submit(retry.call, "download image", lambda u=url: fetch(u))] = data_hash
        bar = tqdm(total=len(futures), desc="download images", unit="img", disable=None, leave=False)
        for done, future in enumerate(as_completed(futures), 1):
            data_hash = futures[future]
            try:
                cache.put(data_hash, future.result())
            except Exception as exc:  # reported below, never with the signed URL itself
                failures[data_hash] = type(exc).__name__ + (f" {exc.code}" if hasattr(exc, "code") else "")
            bar.update(1)
            if done % 200 == 0:  # a killed download keeps what it already has
                cache.save_index()
        bar.close()
    cache.save_index()
    if failures:
        first = next(iter(failures.items()))
        raise EncordError(
            f"{len(failures)} of {len(links)} images could not be downloaded after {retry.attempts} attempts "
            f"(first: {first[0]}: {first[1]}); run again to fetch only the missing ones"
        )


def decode_image(content: bytes, size: Sequence[int], grayscale: bool) -> tuple[Array, tuple[int, int]]:
    """Pixels in [0, 1], float32, resized to ``size`` (height, width), and the image's own (height, width)."""
    from PIL import Image

    with Image.open(io.BytesIO(content)) as opened:
        width, height = opened.size
        image = opened.convert("L" if grayscale else "RGB")
        if image.size != (int(size[1]), int(size[0])):
            image = image.resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32) / 255.0, (int(height), int(width))


def decode_original(content: bytes) -> Array:
    """The image at its own size and in its own pixels: uint8, (H, W) for grayscale, (H, W, 3) otherwise."""
    from PIL import Image

    with Image.open(io.BytesIO(content)) as opened:
        image = opened if opened.mode in ("L", "RGB") else opened.convert("RGB")
        return np.asarray(image, dtype=np.uint8)

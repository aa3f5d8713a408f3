"""An Encord workflow project as the runner's platform: ``name``, ``read()``, ``stages()``, ``apply()``.

``project.source._target_`` returns an :class:`EncordPlatform` (:func:`open_project` for a live project,
:func:`plugins.encord.export.open_export` for an export on disk). Reading never writes to the platform;
everything that does is a record of an action plan, and only :meth:`EncordPlatform.apply` performs it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plugins.encord.credentials import DEFAULT_DOMAIN, login, read_credentials
from plugins.encord.errors import EncordError
from plugins.encord.images import ImageCache, decode_image, download_images, fetch_url
from plugins.encord.reading import Reader, RowInfo
from plugins.encord.retry import Retry
from plugins.encord.writing import Writer
from plugins.sources.dataset import Dataset

# What the config may name as a _target_ (the rest are helpers: see runner.config).
__all__ = ["EncordPlatform", "open_project"]

log = logging.getLogger("runner")


def held_out(data_hash: str, fraction: float) -> bool:
    """A fixed, seed-free test membership from the data hash: an item never moves between splits."""
    if fraction <= 0:
        return False
    return int(hashlib.sha256(data_hash.encode()).hexdigest()[:8], 16) / 2**32 < fraction


class EncordPlatform:
    """One project (a live ``Project`` or the offline stand-in) with its image cache."""

    def __init__(
        self,
        project: Any,
        classification: str,
        cache_dir: str | Path,
        name: str = "encord",
        image_size: Sequence[int] = (28, 28),
        grayscale: bool = True,
        test_fraction: float = 0.0,
        bundle_size: int = 100,
        download_workers: int = 4,
        retry: Retry | None = None,
        fetch: Callable[[str], bytes] = fetch_url,
    ) -> None:
        self.name = name
        self.reader = Reader(project, classification, bundle_size, retry)
        self.writer = Writer(self.reader)
        self.cache_dir = Path(cache_dir)
        self.image_size = tuple(int(s) for s in image_size)
        self.grayscale = bool(grayscale)
        self.test_fraction = float(test_fraction)
        self.download_workers = int(download_workers)
        self.fetch = fetch

    def stages(self) -> tuple[str | None, set[str]]:
        """The first annotation stage and the final stage titles of the workflow."""
        return self.reader.stage_titles()

    def read(self) -> Dataset:
        """Every row with its image, its label (-1 where none) and its workflow facts in ``extra``.

        Labels are read only from rows that have a label row; images of the others come through their
        storage items; signed URLs are asked for only where the image cache lacks the image.
        """
        reader = self.reader
        rows = reader.list_rows()
        if not rows:
            raise EncordError(f"project '{self.name}' has no label rows")
        reader.initialise_labels(rows)
        infos = [reader.describe(row) for row in rows]
        classes = reader.class_names()
        cache = ImageCache(self.cache_dir)
        missing = [row for row in rows if not cache.has(str(row.data_hash))]
        links = reader.signed_urls(missing) if missing else {}
        download_images(
            links,
            cache,
            workers=self.download_workers,
            retry=reader.retry,
            fetch=self.fetch,
        )
        images = np.stack([decode_image(cache.read(i.data_hash), self.image_size, self.grayscale) for i in infos])
        unknown = sorted({i.answer for i in infos if i.answer is not None and i.answer not in classes})
        if unknown:
            log.warning(f"{self.name}: answers outside the ontology's options are ignored: {', '.join(unknown[:5])}")
        labels = np.array([classes.index(i.answer) if i.answer in classes else -1 for i in infos], dtype=np.int64)
        split = np.array(["test" if held_out(i.data_hash, self.test_fraction) else "pool" for i in infos])
        extra = {
            "title": np.array([i.title for i in infos], dtype=object),
            "stage": np.array([i.stage for i in infos], dtype=object),
            "priority": np.array([np.nan if i.priority is None else i.priority for i in infos], dtype=np.float64),
            "task_uuid": np.array([i.task_uuid for i in infos], dtype=object),
            "has_label_row": np.array([i.label_hash is not None for i in infos], dtype=bool),
        }
        log.info(
            f"{self.name}: {len(infos)} rows, {int((labels >= 0).sum())} with a '{reader.classification}' "
            f"label, stages: {_stage_counts(infos)}"
        )
        return Dataset(np.array([i.data_hash for i in infos]), images, labels, classes, split, extra)

    def apply(self, records: list[dict], checkpoint: Callable[[], None] = lambda: None) -> None:
        """Apply the platform records of a plan in place (``status``, ``error``); see
        :mod:`plugins.encord.writing`."""
        self.writer.apply(records, checkpoint)


def _stage_counts(infos: Iterable[RowInfo]) -> str:
    counts: dict[str, int] = {}
    for info in infos:
        counts[str(info.stage)] = counts.get(str(info.stage), 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def open_project(
    project_hash: str,
    classification: str,
    cache_dir: str,
    image_size: Sequence[int] = (28, 28),
    grayscale: bool = True,
    test_fraction: float = 0.0,
    domain: str = DEFAULT_DOMAIN,
    bundle_size: int = 100,
    download_workers: int = 4,
    retry_attempts: int = 4,
    retry_base_delay: float = 1.0,
    connect: Callable[..., Any] | None = None,
) -> EncordPlatform:
    """A live Encord workflow project (``project=encord``).

    ``connect`` replaces the SDK login (``connect(credentials, project_hash, domain) -> Project``); the
    default logs in with :func:`plugins.encord.credentials.login`. Credentials are read first: a missing key
    fails before anything.
    """
    credentials = read_credentials()
    project = (connect or login)(credentials, project_hash, domain)
    return EncordPlatform(
        project,
        classification,
        cache_dir,
        name=f"encord:{project_hash}",
        image_size=image_size,
        grayscale=grayscale,
        test_fraction=test_fraction,
        bundle_size=bundle_size,
        download_workers=download_workers,
        retry=Retry(retry_attempts, retry_base_delay),
    )

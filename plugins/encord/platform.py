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

from plugins.encord.actions import Record
from plugins.encord.credentials import DEFAULT_DOMAIN, login, read_credentials
from plugins.encord.errors import EncordError
from plugins.encord.images import ImageCache, decode_image, decode_original, download_images, fetch_url
from plugins.encord.reading import Reader, RowInfo
from plugins.encord.retry import Retry
from plugins.encord.writing import Writer
from plugins.errors import InputError
from plugins.sources.dataset import Dataset

# What the config may name as a _target_ (the rest are helpers: see runner.targets).
__all__ = ["EncordPlatform", "open_project"]

log = logging.getLogger("runner")


def held_out(data_hash: str, fraction: float) -> bool:
    """A fixed, seed-free test membership from the data hash: a labelled item never moves between splits."""
    if fraction <= 0:
        return False
    return int(hashlib.sha256(data_hash.encode()).hexdigest()[:8], 16) / 2**32 < fraction


class EncordPlatform:
    """One project (a live ``Project`` or the offline stand-in) with its image cache.

    ``trusted_stages``: the stages whose labels count as labelled (None: the workflow's final stages, such as
    Complete); a label anywhere else (in review, or sent back for relabelling) is listed as unconfirmed and never
    trained on. The test split: every item at ``test_stage``, plus a fixed share ``test_fraction`` of the trusted
    labels (chosen by data hash); unlabelled items are never test items unless they wait at ``test_stage``.
    """

    # The project.source keys that say which project this is (open_project's, open_export's): a project
    # directory refuses to continue with another.
    identity_keys = ("project_hash", "path", "classification", "domain")

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
        trusted_stages: Sequence[str] | None = None,
        test_stage: str | None = None,
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
        self.trusted_stages = None if trusted_stages is None else [str(t) for t in trusted_stages]
        self.test_stage = None if test_stage is None else str(test_stage)

    def workflow(self) -> dict[str, dict[str, Any]]:
        """Stage title -> ``{"kind": ..., "pathways": [...]}``, in workflow order (pathways of Agent stages)."""
        return self.reader.stage_info()

    def trusted(self) -> set[str]:
        """The stages whose labels count; InputError for a configured stage the workflow lacks."""
        kinds = self.reader.stage_kinds()
        named = [("project.source.trusted_stages", t) for t in self.trusted_stages or []]
        named += [("project.source.test_stage", self.test_stage)] if self.test_stage is not None else []
        for key, title in named:
            if title not in kinds:
                raise InputError(f"{key}: '{title}' is not a stage of the workflow (stages: {', '.join(kinds)})")
        if self.trusted_stages is None:
            return {title for title, kind in kinds.items() if kind == "DONE"}
        return set(self.trusted_stages)

    def read(self) -> Dataset:
        """Every row with its image, its trusted label (-1 where none) and its workflow facts in ``extra``
        (``title``, ``stage``, ``priority``, ``task_uuid``, ``has_label_row``, ``unconfirmed_label``: the class
        of a label outside the trusted stages, -1 where none; ``height``, ``width``: the image's own size).

        Labels are read only from rows that have a label row; images of the others come through their
        storage items; signed URLs are asked for only where the image cache lacks the image. ``images`` are
        resized to ``image_size`` for the model; ``original`` reads an item's image at its own size from the
        cache, for image-level metrics.
        """
        reader = self.reader
        rows = reader.list_rows()
        if not rows:
            raise EncordError(f"project '{self.name}' has no label rows")
        trusted = self.trusted()
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
        decoded = [decode_image(cache.read(i.data_hash), self.image_size, self.grayscale) for i in infos]
        images = np.stack([pixels for pixels, _ in decoded])
        sizes = np.array([size for _, size in decoded], dtype=np.int64).reshape(len(infos), 2)
        unknown = sorted({i.answer for i in infos if i.answer is not None and i.answer not in classes})
        if unknown:
            log.warning(f"{self.name}: answers outside the ontology's options are ignored: {', '.join(unknown[:5])}")
        answers = np.array([classes.index(i.answer) if i.answer in classes else -1 for i in infos], dtype=np.int64)
        at_test_stage = np.array([i.stage == self.test_stage for i in infos], dtype=bool)
        counts = np.array([i.stage in trusted for i in infos], dtype=bool) | at_test_stage
        labels = np.where(counts, answers, -1)
        held = np.array([held_out(i.data_hash, self.test_fraction) for i in infos], dtype=bool)
        split = np.where(at_test_stage | (held & (labels >= 0)), "test", "pool")
        hashes = [i.data_hash for i in infos]
        extra = {
            "title": np.array([i.title for i in infos], dtype=object),
            "stage": np.array([i.stage for i in infos], dtype=object),
            "priority": np.array([np.nan if i.priority is None else i.priority for i in infos], dtype=np.float64),
            "task_uuid": np.array([i.task_uuid for i in infos], dtype=object),
            "has_label_row": np.array([i.label_hash is not None for i in infos], dtype=bool),
            "unconfirmed_label": np.where(counts, -1, answers),
            "height": sizes[:, 0],
            "width": sizes[:, 1],
        }
        unconfirmed = int((extra["unconfirmed_label"] >= 0).sum())
        log.info(
            f"{self.name}: {len(infos)} rows, {int((labels >= 0).sum())} with a trusted '{reader.classification}' "
            f"label ({', '.join(sorted(trusted))}), {unconfirmed} labels not trusted yet (not trained on), "
            f"stages: {_stage_counts(infos)}"
        )
        return Dataset(
            np.array(hashes), images, labels, classes, split, extra,
            original=lambda i: decode_original(cache.read(hashes[i])),
        )

    def apply(self, records: list[Record], checkpoint: Callable[[], None] = lambda: None) -> None:
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
    trusted_stages: Sequence[str] | None = None,
    test_stage: str | None = None,
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
        trusted_stages=trusted_stages,
        test_stage=test_stage,
    )

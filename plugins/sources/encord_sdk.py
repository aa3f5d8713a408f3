"""Encord workflow projects through the ``encord`` SDK: credentials, listing, images, applying actions.

Everything that touches the platform goes through :class:`EncordAdapter`, and the adapter uses only the
SDK calls listed in :data:`SDK_CALLS` (the contract test checks each against the installed ``encord``).
The adapter works on anything shaped like ``encord.project.Project``, so the offline stand-in in
``plugins.sources.encord_offline`` (exports on disk, tests) runs the very same code as a live project.

Credentials come only from the environment (``ENCORD_SSH_KEY_FILE``, else ``ENCORD_SSH_KEY``). They are
handed to the SDK and nowhere else: never logged, never written, never part of an error message.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from plugins.errors import InputError, ServiceError
from plugins.sources.dataset import Dataset

log = logging.getLogger("runner")

CREDENTIAL_VARIABLES = ("ENCORD_SSH_KEY_FILE", "ENCORD_SSH_KEY")
DEFAULT_DOMAIN = "https://api.encord.com"

# Every SDK attribute the adapter touches: (class, attribute, keyword arguments it passes); None for
# properties. The contract test checks each entry against the installed ``encord`` with ``inspect.signature``.
SDK_CALLS: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    (
        "encord.user_client.EncordUserClient",
        "create_with_ssh_private_key",
        ("ssh_private_key", "ssh_private_key_path", "domain"),
    ),
    ("encord.user_client.EncordUserClient", "get_project", ("project_hash",)),
    ("encord.project.Project", "list_label_rows_v2", ("data_hashes", "include_workflow_graph_node")),
    ("encord.project.Project", "create_bundle", ("bundle_size",)),
    ("encord.project.Project", "ontology_structure", None),
    ("encord.project.Project", "workflow", None),
    ("encord.workflow.workflow.Workflow", "stages", None),
    ("encord.workflow.common.WorkflowStageBase", "uuid", None),
    ("encord.workflow.common.WorkflowStageBase", "title", None),
    ("encord.workflow.stages.annotation.AnnotationStage", "stage_type", None),
    ("encord.objects.ontology_structure.OntologyStructure", "get_child_by_title", ("title", "type_")),
    ("encord.objects.ontology_structure.OntologyStructure", "classifications", None),
    ("encord.objects.attributes.RadioAttribute", "options", None),
    ("encord.objects.attributes.RadioAttribute", "name", None),
    ("encord.objects.options.NestableOption", "title", None),
    ("encord.objects.LabelRowV2", "initialise_labels", ("overwrite", "bundle", "include_signed_url")),
    ("encord.objects.LabelRowV2", "get_classification_instances", ()),
    ("encord.objects.LabelRowV2", "set_priority", ("priority", "bundle")),
    ("encord.objects.LabelRowV2", "workflow_reopen", ("bundle",)),
    ("encord.objects.LabelRowV2", "workflow_complete", ("bundle",)),
    ("encord.objects.LabelRowV2", "data_hash", None),
    ("encord.objects.LabelRowV2", "data_title", None),
    ("encord.objects.LabelRowV2", "label_hash", None),
    ("encord.objects.LabelRowV2", "data_link", None),
    ("encord.objects.LabelRowV2", "workflow_graph_node", None),
    ("encord.objects.LabelRowV2", "priority", None),
    ("encord.objects.LabelRowV2", "task_uuid", None),
    ("encord.objects.ClassificationInstance", "ontology_item", None),
    ("encord.objects.ClassificationInstance", "get_answer", ("attribute",)),
    ("encord.objects.Classification", "attributes", None),
)


class EncordError(ServiceError):
    """The platform could not be read or changed; the message says what to do (exit 1)."""


class CredentialsError(InputError):
    """No usable credentials in the environment (exit 2)."""


# --- credentials --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    """Where the private key came from. ``repr`` never shows the key itself."""

    key: str | None = field(default=None, repr=False)
    key_path: Path | None = None
    source: str = ""


def read_credentials(environ: dict[str, str] | None = None) -> Credentials:
    """The key named by the environment, or :class:`CredentialsError` naming both variables in one line."""
    env = os.environ if environ is None else environ
    names = " or ".join(CREDENTIAL_VARIABLES)
    path = env.get("ENCORD_SSH_KEY_FILE", "").strip()
    if path:
        key_path = Path(path).expanduser()
        try:
            with open(key_path, encoding="utf-8") as handle:
                readable = bool(handle.read(1))
        except OSError:
            readable = False
        if not readable:
            raise CredentialsError(
                f"Encord credentials: ENCORD_SSH_KEY_FILE points at an unreadable or empty file; set {names}"
            )
        return Credentials(key_path=key_path, source="ENCORD_SSH_KEY_FILE")
    key = env.get("ENCORD_SSH_KEY", "")
    if key.strip():
        return Credentials(key=key, source="ENCORD_SSH_KEY")
    raise CredentialsError(
        f"Encord credentials missing: set {names} (a private key file path, or the key itself)"
    )


def login(credentials: Credentials, project_hash: str, domain: str = DEFAULT_DOMAIN) -> Any:
    """A live ``encord.project.Project``. Failures become one line that never carries the key."""
    from encord.user_client import EncordUserClient

    try:
        client = EncordUserClient.create_with_ssh_private_key(
            ssh_private_key=credentials.key, ssh_private_key_path=credentials.key_path, domain=domain
        )
        return client.get_project(project_hash=project_hash)
    except Exception as exc:  # the SDK raises many types; all end the run the same way
        reason = _redact(str(exc).splitlines()[0] if str(exc) else "", credentials)
        raise EncordError(
            f"cannot open Encord project {project_hash} with the key from {credentials.source}: "
            f"{type(exc).__name__}{': ' + reason if reason else ''}"
        ) from None


def _redact(text: str, credentials: Credentials) -> str:
    # The SDK's messages should not quote the key, but a message must never be the way it leaks.
    if credentials.key:
        for line in filter(None, (s.strip() for s in credentials.key.splitlines())):
            text = text.replace(line, "***")
    return text[:300]


# --- retries ------------------------------------------------------------------------------------------------
def is_transient(exc: BaseException) -> bool:
    """Errors that a later attempt may not meet: timeouts, rate limits, server and connection errors."""
    from encord import exceptions as ex

    transient: tuple[type[BaseException], ...] = (
        ex.TimeOutError,
        ex.RequestException,
        ex.RateLimitExceededError,
        ex.GenericServerError,
        ex.UnknownException,
        ConnectionError,
        TimeoutError,
    )
    try:
        import requests

        transient += (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # requests comes with encord; guard only for trimmed environments
        pass
    if isinstance(exc, transient):
        return True
    # urllib reports refused connections and HTTP 5xx/429 as URLError/HTTPError (both OSError).
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code == 429 or code >= 500
    return isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError | PermissionError)


@dataclass(frozen=True)
class Retry:
    """Exponential backoff with jitter: ``base_delay * 2**attempt``, capped, over ``attempts`` tries."""

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def delay(self, attempt: int) -> float:
        # Jitter spreads retries of parallel downloads so they do not hit a rate limit together.
        return min(self.max_delay, self.base_delay * 2**attempt) * (0.5 + random.random() / 2)

    def call(self, what: str, function: Callable[[], Any]) -> Any:
        for attempt in range(self.attempts):
            try:
                return function()
            except Exception as exc:
                if not is_transient(exc) or attempt == self.attempts - 1:
                    raise
                wait = self.delay(attempt)
                log.warning(
                    f"{what}: {type(exc).__name__}; retrying in {wait:.1f} s ({attempt + 2}/{self.attempts})"
                )
                self.sleep(wait)
        raise AssertionError("unreachable")


# --- one row, as the runner sees it -------------------------------------------------------------------------
@dataclass(frozen=True)
class RowInfo:
    data_hash: str
    title: str
    stage: str | None
    priority: float | None
    task_uuid: str | None
    label_hash: str | None
    answer: str | None
    data_link: str | None


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class EncordAdapter:
    """The runner's only door to a project (live ``Project`` or the offline stand-in)."""

    def __init__(
        self,
        project: Any,
        classification: str,
        bundle_size: int = 100,
        retry: Retry | None = None,
        name: str = "encord",
    ) -> None:
        self.project = project
        self.classification = classification
        self.bundle_size = int(bundle_size)
        self.retry = retry or Retry()
        self.name = name
        self._attribute: Any = None

    # --- ontology and workflow ------------------------------------------------------------------------------
    def radio_attribute(self) -> Any:
        """The radio attribute named in the config; its options are the classes, in ontology order."""
        if self._attribute is None:
            from encord.objects.attributes import RadioAttribute

            structure = self.project.ontology_structure
            try:
                self._attribute = structure.get_child_by_title(
                    title=self.classification, type_=RadioAttribute
                )
            except Exception:
                radios = [
                    a.name
                    for c in structure.classifications
                    for a in c.attributes
                    if isinstance(a, RadioAttribute)
                ]
                raise InputError(
                    f"the ontology has no radio classification named '{self.classification}' "
                    f"(radio classifications: {', '.join(radios) or 'none'}); "
                    "set project.source.classification"
                ) from None
        return self._attribute

    def class_names(self) -> list[str]:
        return [option.title for option in self.radio_attribute().options]

    def stage_titles(self) -> tuple[str | None, set[str]]:
        """The first annotation stage (where ``workflow_reopen`` sends tasks) and the final stage titles."""
        first, final = None, set()
        for stage in self.project.workflow.stages:
            kind = str(getattr(stage.stage_type, "value", stage.stage_type))
            if kind == "ANNOTATION" and first is None:
                first = stage.title
            elif kind == "DONE":
                final.add(stage.title)
        return first, final

    # --- reading --------------------------------------------------------------------------------------------
    def list_rows(self, data_hashes: Sequence[str] | None = None) -> list[Any]:
        """Every label row (labelled or not), or those of ``data_hashes``, with their workflow stage."""

        def call() -> list[Any]:
            if data_hashes is None:
                return list(self.project.list_label_rows_v2(include_workflow_graph_node=True))
            return list(
                self.project.list_label_rows_v2(
                    data_hashes=list(data_hashes), include_workflow_graph_node=True
                )
            )

        return self.retry.call("list label rows", call)

    def initialise(self, rows: Sequence[Any], signed_urls: bool = True, progress: bool = True) -> None:
        """Load labels (and signed image URLs) in bundles; rows without labels get their label row created."""
        chunks = list(_chunks(rows, self.bundle_size))
        bar = tqdm(
            total=len(rows),
            desc="initialise labels",
            unit="row",
            disable=None if progress else True,
            leave=False,
        )
        for chunk in chunks:

            def call(chunk: Sequence[Any] = chunk) -> None:
                with self.project.create_bundle(bundle_size=self.bundle_size) as bundle:
                    for row in chunk:
                        # overwrite=True makes a retried bundle safe: rows it already filled are filled again.
                        row.initialise_labels(overwrite=True, bundle=bundle, include_signed_url=signed_urls)

            self.retry.call("initialise labels", call)
            bar.update(len(chunk))
        bar.close()

    def describe(self, row: Any) -> RowInfo:
        node = row.workflow_graph_node
        try:
            priority, task = row.priority, row.task_uuid
        except Exception:  # WrongProjectTypeError: a project without a workflow has neither
            priority, task = None, None
        return RowInfo(
            data_hash=str(row.data_hash),
            title=str(row.data_title),
            stage=None if node is None else node.title,
            priority=None if priority is None else float(priority),
            task_uuid=None if task is None else str(task),
            label_hash=row.label_hash,
            answer=self.answer(row),
            data_link=row.data_link,
        )

    def answer(self, row: Any) -> str | None:
        """The option chosen for the configured radio classification, or None (unlabelled or not
        initialised)."""
        attribute = self.radio_attribute()
        try:
            instances = row.get_classification_instances()
        except Exception:  # rows that were not initialised have no labels to read
            return None
        for instance in instances:
            if any(a.name == attribute.name for a in instance.ontology_item.attributes):
                option = instance.get_answer(attribute=attribute)
                if option is not None and hasattr(option, "title"):
                    return option.title
        return None

    def read_rows(self, signed_urls: bool = True) -> tuple[list[Any], list[RowInfo]]:
        rows = self.list_rows()
        self.initialise(rows, signed_urls=signed_urls)
        return rows, [self.describe(row) for row in rows]

    # --- acting ---------------------------------------------------------------------------------------------
    def shows(self, record: dict, info: RowInfo) -> bool:
        """Whether the platform already shows what ``record`` would do (so applying it changes nothing)."""
        first, final = self.stage_titles()
        if record["action"] == "priority":
            return info.priority is not None and abs(info.priority - float(record["value"])) < 1e-6
        if record["action"] == "reopen":
            # The SDK leaves rows without a label row where they are: nothing to reopen.
            return info.label_hash is None or (first is not None and info.stage == first)
        if record["action"] == "complete":
            return info.stage in final
        raise ValueError(f"not a platform action: {record['action']}")

    def apply(self, records: list[dict], checkpoint: Callable[[], None] = lambda: None) -> None:
        """Apply the not-yet-applied platform records in place, kind by kind, one bundle per chunk.

        Before each chunk the rows are read again, and records whose effect the platform already shows
        are marked applied without a call: re-running after a crash or a partial failure finishes only what
        is missing. A chunk that still fails after the retries is marked failed (with the error) and the
        rest goes on. ``checkpoint`` runs after every chunk, so the record on disk lags at most one bundle.
        """
        for kind in ("reopen", "complete", "priority"):
            todo = [r for r in records if r["action"] == kind and r.get("status") != "applied"]
            for chunk in _chunks(todo, self.bundle_size):
                try:
                    self.retry.call(
                        f"{kind} ({len(chunk)} tasks)", lambda chunk=chunk: self._apply_chunk(chunk)
                    )
                except Exception as exc:
                    for record in chunk:
                        if record.get("status") != "applied":
                            record["status"] = "failed"
                            record["error"] = (
                                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                            )
                checkpoint()

    def _apply_chunk(self, chunk: Sequence[dict]) -> None:
        rows = {str(row.data_hash): row for row in self.list_rows([r["data_hash"] for r in chunk])}
        todo = []
        for record in chunk:
            row = rows.get(record["data_hash"])
            if row is None:
                record.update(status="failed", error="not in the project any more")
                continue
            if self.shows(record, self.describe_state(row)):
                record.update(status="applied", error=None)
                continue
            todo.append((record, row))
        if not todo:
            return
        needs_row = [row for record, row in todo if record["action"] == "complete" and row.label_hash is None]
        if needs_row:  # workflow_complete needs a label row; creating one is what initialise does
            self.initialise(needs_row, signed_urls=False, progress=False)
        with self.project.create_bundle(bundle_size=self.bundle_size) as bundle:
            for record, row in todo:
                if record["action"] == "priority":
                    row.set_priority(priority=float(record["value"]), bundle=bundle)
                elif record["action"] == "reopen":
                    row.workflow_reopen(bundle=bundle)
                else:
                    row.workflow_complete(bundle=bundle)
        for record, _ in todo:
            record.update(status="applied", error=None)

    def describe_state(self, row: Any) -> RowInfo:
        """Stage and priority of a freshly listed row (labels are not needed to judge an action)."""
        node = row.workflow_graph_node
        try:
            priority = row.priority
        except Exception:
            priority = None
        return RowInfo(
            str(row.data_hash),
            str(row.data_title),
            None if node is None else node.title,
            None if priority is None else float(priority),
            None,
            row.label_hash,
            None,
            None,
        )


# --- images -------------------------------------------------------------------------------------------------
def fetch_url(url: str, timeout: float = 60.0) -> bytes:
    """Bytes behind a signed URL (https, or file:// for exports on disk). No credentials travel with it."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - URLs come from the SDK
        return response.read()


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
            self.index = json.loads(self.index_path.read_text(encoding="utf-8"))

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
        from plugins.files import atomic_write_text

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
                failures[data_hash] = "no data link"
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


def decode_image(content: bytes, size: Sequence[int], grayscale: bool) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(content)) as image:
        image = image.convert("L" if grayscale else "RGB")
        if image.size != (int(size[1]), int(size[0])):
            image = image.resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32) / 255.0


# --- the Dataset both Encord sources return -----------------------------------------------------------------
def held_out(data_hash: str, fraction: float) -> bool:
    """A fixed, seed-free test membership from the data hash: an item never moves between splits."""
    if fraction <= 0:
        return False
    return int(hashlib.sha256(data_hash.encode()).hexdigest()[:8], 16) / 2**32 < fraction


def build_dataset(
    adapter: EncordAdapter,
    cache_dir: str | Path,
    image_size: Sequence[int] = (28, 28),
    grayscale: bool = True,
    test_fraction: float = 0.0,
    download_workers: int = 4,
    fetch: Callable[[str], bytes] = fetch_url,
) -> Dataset:
    """List, initialise, download and decode every row; ``extra`` holds workflow facts and the adapter."""
    rows, infos = adapter.read_rows(signed_urls=True)
    if not infos:
        raise EncordError(f"project '{adapter.name}' has no label rows")
    classes = adapter.class_names()
    cache = ImageCache(cache_dir)
    download_images(
        {i.data_hash: i.data_link for i in infos},
        cache,
        workers=download_workers,
        retry=Retry(
            attempts=adapter.retry.attempts, base_delay=adapter.retry.base_delay, sleep=adapter.retry.sleep
        ),
        fetch=fetch,
    )
    images = np.stack([decode_image(cache.read(i.data_hash), image_size, grayscale) for i in infos])
    unknown = sorted({i.answer for i in infos if i.answer is not None and i.answer not in classes})
    if unknown:
        log.warning(
            f"{adapter.name}: answers outside the ontology's options are ignored: {', '.join(unknown[:5])}"
        )
    labels = np.array([classes.index(i.answer) if i.answer in classes else -1 for i in infos], dtype=np.int64)
    split = np.array(["test" if held_out(i.data_hash, test_fraction) else "pool" for i in infos])
    extra = {
        "title": np.array([i.title for i in infos], dtype=object),
        "stage": np.array([i.stage for i in infos], dtype=object),
        "priority": np.array([np.nan if i.priority is None else i.priority for i in infos], dtype=np.float64),
        "task_uuid": np.array([i.task_uuid for i in infos], dtype=object),
        "platform": adapter,
    }
    log.info(
        f"{adapter.name}: {len(infos)} rows, {int((labels >= 0).sum())} with a '{adapter.classification}' "
        f"label, stages: {_stage_counts(infos)}"
    )
    return Dataset(np.array([i.data_hash for i in infos]), images, labels, classes, split, extra)


def _stage_counts(infos: Iterable[RowInfo]) -> str:
    counts: dict[str, int] = {}
    for info in infos:
        counts[str(info.stage)] = counts.get(str(info.stage), 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def load(
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
) -> Dataset:
    """A live Encord workflow project as a :class:`Dataset` (``project=encord``).

    ``connect`` replaces the SDK login (``connect(credentials, project_hash, domain) -> Project``); the
    default logs in with :func:`login`. Credentials are read first: a missing key fails before anything.
    """
    credentials = read_credentials()
    project = (connect or login)(credentials, project_hash, domain)
    adapter = EncordAdapter(
        project,
        classification,
        bundle_size,
        Retry(retry_attempts, retry_base_delay),
        name=f"encord:{project_hash}",
    )
    return build_dataset(adapter, cache_dir, image_size, grayscale, test_fraction, download_workers)

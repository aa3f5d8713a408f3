"""Your own images: a folder of PNG, JPEG, WebP, BMP or TIFF files, read through Pillow.

Items
    Every file below ``path`` whose name ends in an image extension (any case; hidden files and folders, whose
    names start with a dot, are left out). An item's id is its path relative to the folder with ``/``
    separators, e.g. ``cats/0001.jpg``; ``extra["content_sha256"]`` holds the SHA-256 of its bytes, so a renamed
    or edited file can be recognised, and ``extra["height"]``, ``extra["width"]`` its own size (after its EXIF
    orientation). Files with other extensions are counted and ignored.

Labels, the first of these that applies
    1. ``manifest``: a CSV file (``.csv``, or ``.tsv`` tab-separated) or JSON Lines (``.jsonl``, one object per
       line) with a ``path`` column (relative to the folder). ``label``: the class name; blank, null or no such
       column = unlabelled. Optional ``split``: ``test`` or ``pool`` (``train`` counts as pool; blank = pool);
       without the column the source has no split and the runner splits by ``project.test_size``. Optional
       ``tags``: names separated by ``;`` (a list in JSON), in ``extra["tags"]`` as a tuple per item. Every other
       column becomes ``extra[column]``: numbers (blank = NaN) when every value is a number, so a ``cost``
       column serves ``selection.cost=cost``, text otherwise. Images the manifest does not name are still items,
       unlabelled (in the pool); the manifest describes the folder, it does not choose from it.
    2. ``folder_labels`` (default true): the first folder of an item's path is its class (``root/CLASS/x.jpg``);
       images directly in ``root`` are unlabelled.
    3. Otherwise every label is -1: a cold start.
    ``classes`` fixes the classes and their order, including classes with no example yet; without it they are the
    labels found, in natural order ("2" before "10"). An item whose label is not among ``classes`` is skipped.

What the model sees (``images``)
    float32 in [0, 1], (n, H, W) grayscale or (n, H, W, 3) RGB, ``image_size`` = H x W (an int for a square):
    each image letterboxed, i.e. scaled (up or down, bilinear, antialiased) until it fits with its aspect
    kept, then centred on a black canvas (the odd pixel of padding goes below and to the right). Transparent
    pixels are composited over black and 16-bit images scaled to 8 bits first. ``grayscale``: true gives Pillow's
    luma (ITU-R 601-2), false RGB (a gray image repeated over three channels), null (default) grayscale when
    every image is (modes 1, L, LA, I, I;16, F; palette images count as colour) and RGB otherwise. A multi-frame
    file gives its first frame. ``original(i)`` reads item i's file again, at its own size: uint8, (H, W) or
    (H, W, 3).

Files that cannot be used
    An unreadable, empty, truncated or corrupt image, a manifest row whose path names no image in the folder, a
    duplicate manifest row, an unknown split or class: each is left out, listed in ``Dataset.skipped`` as
    (file, reason) and counted in one console line. An empty folder, a folder without images, a manifest without
    a ``path`` column or naming no image of the folder, or nothing left to use raise ``InputError``.

Decoding and the cache
    Pixels are decoded once, a chunk of files at a time on ``workers`` threads (Pillow and hashlib release the
    GIL while they decode and hash, so threads scale without a process pool's start-up and copies), JPEGs
    through Pillow's ``draft`` (libjpeg itself scales down by up to 8), and written as uint8 to an ``.npy`` file
    in ``cache_dir`` named by a digest of every file's id and content hash, ``image_size``, the colour mode and
    Pillow's version. A second run with the same files reads that file instead of decoding again (it still reads
    each file once to hash it); a changed, added or removed file gives a new name. The folder itself is never
    written to. Pools whose float32 pixels pass IN_MEMORY_MAX_BYTES stay on disk as
    :class:`~plugins.sources.dataset.StoredImages`, read a slice at a time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np

from plugins.arrays import Array
from plugins.errors import InputError
from plugins.files import atomic_write, atomic_write_text
from plugins.sources.dataset import Dataset, StoredImages
from plugins.sources.shifted import check_disk

__all__ = ["image_folder"]

log = logging.getLogger("runner")

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
IMAGE_KINDS = "PNG, JPEG, WebP, BMP, TIFF"
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
SPLITS = {"test": "test", "pool": "pool", "train": "pool"}
TAG_SEPARATOR = ";"
# Keys this source fills in Dataset.extra itself, or that the runner reads with a meaning of its own.
RESERVED_COLUMNS = frozenset({"content_sha256", "height", "width", "tags", "unconfirmed_label"})
# Bump when the pixels written for the same files and settings change, so older cache files are not read.
CACHE_VERSION = 1
CHUNK_FILES = 128
# Above this many bytes of float32 pixels the images stay on disk (a 28x28 grayscale pool: about 21,000 items).
IN_MEMORY_MAX_BYTES = 64 * 2**20

T = TypeVar("T")


class Skip(NamedTuple):
    """An input left out: the file (or manifest line), what is wrong (counted in the log line) and its detail."""

    file: str
    problem: str
    detail: str = ""

    @property
    def reason(self) -> str:
        return f"{self.problem}: {self.detail}" if self.detail else self.problem


# --- the manifest ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ManifestRow:
    line: int
    label: str | None
    split: str | None
    tags: tuple[str, ...]
    values: dict[str, Any]


@dataclass
class Manifest:
    """The usable rows of a manifest by item id, the ids of refused rows, and what was refused (and why)."""

    path: Path
    id_column: str
    header: list[str]
    columns: list[str]
    has_split: bool
    has_tags: bool
    rows: dict[str, ManifestRow] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    skipped: list[Skip] = field(default_factory=list)


def read_manifest(path: str | Path, id_columns: Sequence[str], normalise: Callable[[str], str | None],
                  keep_columns: Sequence[str] = ()) -> Manifest:
    """The rows of a CSV or JSON Lines manifest keyed by their id (the first of ``id_columns`` it has, made an
    id by ``normalise``; None refuses it). ``keep_columns``: reserved names this caller reads from ``values``."""
    file = Path(path).expanduser()
    records, header, skipped = _manifest_records(file)
    id_column = next((c for c in id_columns if c in header), None)
    if id_column is None:
        wanted = " or ".join(f"'{c}'" for c in id_columns)
        raise InputError(f"project.source.manifest: {file} has no {wanted} column (its columns: "
                         f"{', '.join(header) or 'none'})")
    if not records:
        raise InputError(f"project.source.manifest: {file} has no rows")
    own = {*id_columns, "label", "split", "tags", *keep_columns}
    clash = sorted(c for c in header if c in RESERVED_COLUMNS and c not in own)
    if clash:
        raise InputError(f"project.source.manifest: {file} has a column '{clash[0]}', a name this source fills "
                         "itself; rename the column")
    columns = [c for c in header if c not in own]
    manifest = Manifest(file, id_column, header, columns, "split" in header, "tags" in header, skipped=skipped)
    for line, record in records:
        _add_row(manifest, line, record, normalise, keep_columns)
    return manifest


def _manifest_records(file: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str], list[Skip]]:
    if not file.is_file():
        raise InputError(f"project.source.manifest: {file} is not a file")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"project.source.manifest: {file} cannot be read as UTF-8 text ({exc})") from None
    suffix = file.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _json_lines(file, text)
    if suffix in (".csv", ".tsv", ".txt"):
        return _csv_rows(text, "\t" if suffix == ".tsv" else ",")
    raise InputError(f"project.source.manifest: {file} is neither CSV (.csv, .tsv) nor JSON Lines (.jsonl)")


def _csv_rows(text: str, delimiter: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str], list[Skip]]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = header
    # csv counts physical lines, so a quoted field over several lines still names the row's last line.
    records = [(reader.line_num, {k: v for k, v in row.items() if k is not None}) for row in reader]
    return records, header, []


def _json_lines(file: Path, text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str], list[Skip]]:
    records: list[tuple[int, dict[str, Any]]] = []
    header: dict[str, None] = {}
    skipped: list[Skip] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            skipped.append(Skip(f"{file.name}:{number}", "manifest line is not JSON", exc.msg))
            continue
        if not isinstance(record, dict):
            skipped.append(Skip(f"{file.name}:{number}", "manifest line is not a JSON object"))
            continue
        header.update(dict.fromkeys(record))
        records.append((number, record))
    return records, list(header), skipped


def _add_row(manifest: Manifest, line: int, record: dict[str, Any], normalise: Callable[[str], str | None],
             keep_columns: Sequence[str]) -> None:
    raw = "" if _blank(record.get(manifest.id_column)) else str(record[manifest.id_column]).strip()
    key = normalise(raw) if raw else None
    if key is None:
        problem = f"manifest row without a usable {manifest.id_column}"
        manifest.skipped.append(Skip(f"{manifest.path.name}:{line}", problem, repr(raw) if raw else "blank"))
        return
    if key in manifest.rows or key in manifest.refused:
        first = manifest.rows[key].line if key in manifest.rows else None
        detail = f"line {line}" + (f"; line {first} is used" if first else "")
        manifest.skipped.append(Skip(key, "duplicate manifest row", detail))
        return
    split_text = "" if _blank(record.get("split")) else str(record["split"]).strip().lower()
    if split_text and split_text not in SPLITS:
        manifest.skipped.append(Skip(key, "unknown split", f"'{record['split']}' (test or pool)"))
        manifest.refused.add(key)
        return
    label = None if _blank(record.get("label")) else str(record["label"]).strip()
    values = {c: record.get(c) for c in [*manifest.columns, *keep_columns]}
    manifest.rows[key] = ManifestRow(line, label, SPLITS.get(split_text), _tags(record.get("tags")), values)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _tags(value: Any) -> tuple[str, ...]:
    if _blank(value):
        return ()
    parts = value if isinstance(value, list) else str(value).split(TAG_SEPARATOR)
    return tuple(dict.fromkeys(str(p).strip() for p in parts if str(p).strip()))


def relative_path(text: str, root: Path | None = None) -> str | None:
    """A manifest path as an item id (``/`` separators, no ``./``), or None for one outside the folder. An absolute
    path inside ``root`` is made relative to it."""
    path = PurePosixPath(text.replace("\\", "/"))
    if path.is_absolute() and root is not None:
        try:
            path = PurePosixPath(Path(text).resolve().relative_to(root.resolve()).as_posix())
        except ValueError:
            return None
    if path.is_absolute() or ".." in path.parts or path.as_posix() in ("", "."):
        return None
    return path.as_posix()


def column(values: Sequence[Any]) -> Array:
    """A manifest column over the items: float64 (NaN where blank) when every value given is a number, else text
    ("" where blank)."""
    numbers = [_number(v) for v in values if not _blank(v)]
    if numbers and all(n is not None for n in numbers):
        return np.array([np.nan if _blank(v) else _number(v) for v in values], dtype=np.float64)
    return np.array(["" if _blank(v) else str(v) for v in values], dtype=object)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def natural_key(text: str) -> list[Any]:
    """Sort key putting "2" before "10": digit runs compare as numbers (split keeps text and numbers alternating,
    so two keys never compare a number with text)."""
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", text))]


def resolve_classes(given: Sequence[Any] | None, found: Iterable[str | None]) -> list[str]:
    """``given`` as text in its order (checked), or the labels found in natural order."""
    if given is None:
        return sorted({label for label in found if label is not None}, key=natural_key)
    names = [str(c).strip() for c in given]
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated or "" in names:
        what = f"'{repeated[0]}' twice" if repeated else "a blank name"
        raise InputError(f"project.source.classes lists {what}; give each class once")
    return names


def manifest_extra(manifest: Manifest, ids: Sequence[str]) -> dict[str, Array]:
    """The manifest's per-item columns over ``ids`` (rows it lacks: blank), and ``tags`` when it has them."""
    rows = [manifest.rows.get(i) for i in ids]
    extra = {name: column([None if r is None else r.values.get(name) for r in rows]) for name in manifest.columns}
    if manifest.has_tags:
        tags = np.empty(len(ids), dtype=object)
        tags[:] = [() if r is None else r.tags for r in rows]
        extra["tags"] = tags
    return extra


def manifest_split(manifest: Manifest | None, ids: Sequence[str]) -> Array | None:
    if manifest is None or not manifest.has_split:
        return None
    return np.array([_row_split(manifest.rows.get(i)) for i in ids], dtype="<U4")


def _row_split(row: ManifestRow | None) -> str:
    return "pool" if row is None or row.split is None else row.split


def labelled(names: Sequence[str | None], classes: Sequence[str], ids: Sequence[str], splits: Array | None,
             skipped: list[Skip]) -> Array:
    """Each item's class index, -1 where none; -2 marks an item skipped here (a class not among ``classes``, or a
    test item without a label), with its reason added to ``skipped``."""
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index.get(n, -2) if n is not None else -1 for n in names], dtype=np.int64)
    for i in np.flatnonzero(labels == -2).tolist():
        skipped.append(Skip(ids[i], "label not among project.source.classes", repr(names[i])))
    if splits is not None:
        for i in np.flatnonzero((labels == -1) & (splits == "test")).tolist():
            skipped.append(Skip(ids[i], "test item without a label"))
            labels[i] = -2
    return labels


def report_skipped(where: str, kept: int, skipped: Sequence[Skip], ignored: int, note: str = "") -> None:
    """One console line: what was read, what was skipped (counted by problem) and what was ignored."""
    parts = [f"{where}: {kept:,} items{note}"]
    if skipped:
        counts = Counter(s.problem for s in skipped)
        listed = ", ".join(f"{n:,} {problem}" for problem, n in counts.most_common())
        parts.append(f"{len(skipped):,} skipped ({listed}; each in skipped_files.csv)")
    if ignored:
        parts.append(f"{ignored:,} files that are not images ignored")
    (log.warning if skipped or ignored else log.info)("; ".join(parts))


# --- the folder -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Canvas:
    """What the model sees: height, width, and grayscale (True) or RGB (False)."""

    height: int
    width: int
    grayscale: bool

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width) if self.grayscale else (self.height, self.width, 3)


class Scanned(NamedTuple):
    sha256: str
    mode: str
    problem: str
    detail: str


class Decoded(NamedTuple):
    pixels: Array | None
    height: int
    width: int
    problem: str
    detail: str


def image_folder(
    path: str,
    manifest: str | None = None,
    classes: Sequence[Any] | None = None,
    image_size: int | Sequence[int] = 28,
    grayscale: bool | None = None,
    folder_labels: bool = True,
    cache_dir: str = "outputs/cache/images",
    workers: int | None = None,
) -> Dataset:
    """The images below ``path`` letterboxed to ``image_size``, labelled from ``manifest``, class folders or not at
    all; float32 in [0, 1], (n, H, W) or (n, H, W, 3) (see the module's description)."""
    started = time.perf_counter()
    root = Path(path).expanduser()
    size, threads = _image_size(image_size), _workers(workers)
    chosen = _choose(root, manifest, classes, folder_labels)
    skipped = chosen.skipped
    scanned = _scan(root, chosen.files, threads)
    good = [i for i, s in enumerate(scanned) if not s.problem]
    skipped += [Skip(chosen.files[i], s.problem, s.detail) for i, s in enumerate(scanned) if s.problem]
    files, hashes = [chosen.files[i] for i in good], [scanned[i].sha256 for i in good]
    if not files:
        _nothing_left(root, skipped)
    canvas = Canvas(*size, _resolve_grayscale(grayscale, [scanned[i].mode for i in good]))
    pixels, meta, from_cache = _pixels(root, files, hashes, canvas, Path(cache_dir).expanduser(), threads)
    seconds = time.perf_counter() - started
    skipped += [Skip(f, p, d) for f, p, d in meta["skipped"]]
    position = {f: i for i, f in enumerate(files)}
    rows = np.array([good[position[f]] for f in meta["ids"]], dtype=np.int64)  # positions in chosen.files
    ids = list(meta["ids"])
    extra: dict[str, Any] = {} if chosen.manifest is None else manifest_extra(chosen.manifest, ids)
    extra.update(content_sha256=np.array([scanned[r].sha256 for r in rows.tolist()]),
                 height=np.array(meta["heights"], dtype=np.int64), width=np.array(meta["widths"], dtype=np.int64))
    note = (" (pixels from the cache)" if from_cache else
            f" ({len(files) / max(seconds, 1e-9):,.0f} images/s read and decoded on {threads} threads)")
    report_skipped(str(root), len(ids), skipped, chosen.ignored, note)
    return Dataset(np.array(ids), pixels, chosen.labels[rows], chosen.class_names,
                   None if chosen.split is None else chosen.split[rows], extra,
                   original=Originals(str(root.resolve()), ids),
                   skipped=tuple(sorted((s.file, s.reason) for s in skipped)))


@dataclass
class Chosen:
    """The image files to read (sorted ids), their labels and split, and what was skipped or ignored so far."""

    files: list[str]
    labels: Array
    class_names: list[str]
    split: Array | None
    manifest: Manifest | None
    skipped: list[Skip]
    ignored: int


def _choose(root: Path, manifest: str | None, classes: Sequence[Any] | None, folder_labels: bool) -> Chosen:
    """The folder's images and their labels: from the manifest, else class folders, else none."""
    files, ignored, skipped = list_images(root)
    described = None
    if manifest is not None:
        described = read_manifest(manifest, ("path",), lambda text: relative_path(text, root))
        skipped += described.skipped
        files = _named(files, described, root, skipped)
    names = _label_names(files, described, folder_labels)
    class_names = resolve_classes(classes, names)
    split = manifest_split(described, files)
    labels = labelled(names, class_names, files, split, skipped)
    keep = labels > -2
    return Chosen([f for f, k in zip(files, keep, strict=True) if k], labels[keep], class_names,
                  None if split is None else split[keep], described, skipped, ignored)


def _image_size(value: int | Sequence[int]) -> tuple[int, int]:
    sizes = [value] if isinstance(value, int) else list(value)
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or not all(isinstance(s, int) and 1 <= s <= 4096 for s in sizes):
        raise InputError(f"project.source.image_size={value}: give one side or [height, width], each 1..4096 pixels")
    return int(sizes[0]), int(sizes[1])


def _workers(workers: int | None) -> int:
    if workers is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if int(workers) < 1:
        raise InputError(f"project.source.workers={workers} must be at least 1 (or null: one per core)")
    return int(workers)


def list_images(root: Path) -> tuple[list[str], int, list[Skip]]:
    """Image files below ``root`` as sorted ids, how many other files there are, and unreadable sub-folders."""
    if not root.is_dir():
        raise InputError(f"project.source.path: {root} is not a folder")
    images: list[str] = []
    others = 0
    unreadable: list[Skip] = []

    def note(error: OSError) -> None:
        where = Path(error.filename or root)
        unreadable.append(Skip(where.relative_to(root).as_posix() if where != root else ".", "folder cannot be read",
                               error.strerror or str(error)))

    for folder, dirs, names in os.walk(root, onerror=note):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(folder).relative_to(root)
        for name in names:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                images.append((base / name).as_posix())
            else:
                others += 1
    if not images:
        unread = f" ({len(unreadable)} sub-folders could not be read)" if unreadable else ""
        held = f"holds {others:,} files and none is an image ({IMAGE_KINDS})" if others else "holds no files"
        raise InputError(f"project.source.path: {root} {held}{unread}")
    return sorted(images), others, unreadable


def _named(files: list[str], manifest: Manifest, root: Path, skipped: list[Skip]) -> list[str]:
    """The folder's images less those whose manifest row was refused; manifest rows naming no image are
    skipped, and a manifest that names none of the images is refused."""
    present = set(files)
    missing = [key for key in manifest.rows if key not in present]
    for key in missing:
        exists = (root / key).is_file()
        problem = "not an image file (by its extension)" if exists else "file not found"
        skipped.append(Skip(key, problem, f"{manifest.path.name} line {manifest.rows[key].line}"))
    if len(missing) == len(manifest.rows) and not (manifest.refused & present):
        first = next(iter(manifest.rows), None)
        example = f" (first: '{first}')" if first else ""
        raise InputError(f"project.source.manifest: none of the paths in {manifest.path} names an image below "
                         f"{root}{example}; paths are relative to project.source.path")
    return [f for f in files if f not in manifest.refused]


def _label_names(files: Sequence[str], manifest: Manifest | None, folder_labels: bool) -> list[str | None]:
    if manifest is not None:
        rows = manifest.rows
        return [rows[f].label if f in rows else None for f in files]
    if folder_labels:
        return [f.split("/", 1)[0] if "/" in f else None for f in files]
    return [None] * len(files)


def _nothing_left(root: Path, skipped: Sequence[Skip]) -> None:
    first = skipped[0] if skipped else None
    detail = f" (first: {first.file}: {first.reason})" if first else ""
    raise InputError(f"project.source.path: no usable image in {root}: {len(skipped):,} skipped{detail}")


def _resolve_grayscale(grayscale: bool | None, modes: Sequence[str]) -> bool:
    if grayscale is not None:
        return bool(grayscale)
    return all(mode in GRAY_MODES for mode in modes)


# --- reading files, a chunk at a time -------------------------------------------------------------------------
def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i : i + CHUNK_FILES] for i in range(0, len(items), CHUNK_FILES)]


def in_order(function: Callable[..., T], tasks: Sequence[tuple[Any, ...]], threads: int) -> Iterator[T]:
    """``function(*task)`` for each task, answered in task order, at most 2 x ``threads`` chunks in flight so
    finished chunks never pile up in memory."""
    if threads <= 1 or len(tasks) <= 1:
        yield from (function(*task) for task in tasks)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="image-folder") as pool:
        pending: deque[Future[T]] = deque()
        try:
            for task in tasks:
                pending.append(pool.submit(function, *task))
                if len(pending) >= 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _scan(root: Path, files: Sequence[str], threads: int) -> list[Scanned]:
    tasks = [(str(root), chunk) for chunk in _chunks(files)]
    return [s for part in in_order(_scan_chunk, tasks, threads) for s in part]


def _scan_chunk(root: str, files: Sequence[str]) -> list[Scanned]:
    return [_scan_one(os.path.join(root, f)) for f in files]


def _scan_one(file: str) -> Scanned:
    """The file's content hash and image mode from its header; or what is wrong with it."""
    from PIL import Image

    try:
        with open(file, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return Scanned("", "", "cannot be read", exc.strerror or type(exc).__name__)
    if not data:
        return Scanned("", "", "empty file", "0 bytes")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as opened:
            mode, (width, height) = opened.mode, opened.size
    except Exception as exc:  # any header Pillow rejects is a file to skip, not a failed run
        problem, detail = _problem(exc)
        return Scanned(digest, "", problem, detail)
    if width < 1 or height < 1:
        return Scanned(digest, mode, "corrupt", f"size {width}x{height}")
    return Scanned(digest, mode, "", "")


def _problem(exc: Exception) -> tuple[str, str]:
    from PIL import Image, UnidentifiedImageError

    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read", ""
    if isinstance(exc, Image.DecompressionBombError):
        return "too many pixels", text
    if "truncated" in text.lower():
        return "truncated", text
    return "corrupt", f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _decode_chunk(root: str, files: Sequence[str], hashes: Sequence[str], canvas: Canvas) -> list[Decoded]:
    return [_decode_one(os.path.join(root, f), h, canvas) for f, h in zip(files, hashes, strict=True)]


def _decode_one(file: str, sha256: str, canvas: Canvas) -> Decoded:
    try:
        with open(file, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return Decoded(None, 0, 0, "cannot be read", exc.strerror or type(exc).__name__)
    if hashlib.sha256(data).hexdigest() != sha256:
        return Decoded(None, 0, 0, "changed while being read", "run again")
    try:
        pixels, height, width = letterbox(data, canvas)
    except Exception as exc:  # a decoder failure names the file; the others still load
        problem, detail = _problem(exc)
        return Decoded(None, 0, 0, problem, detail)
    return Decoded(pixels, height, width, "", "")


def fit(height: int, width: int, canvas: Canvas) -> tuple[int, int]:
    """The letterboxed size: the largest (height, width) of the image's aspect that fits the canvas."""
    scale = min(canvas.height / height, canvas.width / width)
    return (min(canvas.height, max(1, round(height * scale))), min(canvas.width, max(1, round(width * scale))))


def letterbox(data: bytes, canvas: Canvas) -> tuple[Array, int, int]:
    """An encoded image letterboxed onto ``canvas`` as uint8, and the image's own (height, width), upright."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        sideways = opened.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientations that swap the axes
        width, height = opened.size[::-1] if sideways else opened.size
        new_height, new_width = fit(height, width, canvas)
        wanted = (new_height, new_width) if sideways else (new_width, new_height)
        # JPEG only (a no-op elsewhere): libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below the size asked.
        opened.draft("L" if canvas.grayscale and opened.mode in ("L", "RGB") else None, wanted)
        image = _eight_bit(ImageOps.exif_transpose(opened), canvas.grayscale)
    if image.size != (new_width, new_height):
        image = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    out = np.zeros(canvas.shape, dtype=np.uint8)
    top, left = (canvas.height - new_height) // 2, (canvas.width - new_width) // 2
    out[top : top + new_height, left : left + new_width] = np.asarray(image, dtype=np.uint8)
    return out, height, width


def _eight_bit(image: Any, grayscale: bool) -> Any:
    """An image in mode L (``grayscale``) or RGB: deep pixels scaled to 8 bits, transparency over black."""
    from PIL import Image

    mode = image.mode
    if mode.startswith("I") or mode == "F":
        # Pillow's own conversion clips 16-bit values at 255; scale them instead (F is taken as 0..255).
        scale = 1.0 if mode == "F" else 1 / 257
        values = np.clip(np.asarray(image, dtype=np.float64) * scale, 0, 255)
        image = Image.fromarray(np.rint(values).astype(np.uint8), "L")
    elif mode in ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        over_black = (rgba[..., :3] * rgba[..., 3:] + 127) // 255
        image = Image.fromarray(over_black.astype(np.uint8), "RGB")
    return image.convert("L" if grayscale else "RGB")


class Originals:
    """Item i's image read again from its file at its own size, upright: uint8, (H, W) for files in a grayscale
    mode, (H, W, 3) otherwise. Pickles as the folder and the ids."""

    def __init__(self, root: str, ids: Sequence[str]) -> None:
        self.root, self.ids = root, list(ids)

    def __call__(self, index: int) -> Array:
        from PIL import Image, ImageOps

        with Image.open(os.path.join(self.root, self.ids[index])) as opened:
            image = ImageOps.exif_transpose(opened)
            return np.asarray(_eight_bit(image, image.mode in GRAY_MODES), dtype=np.uint8)


# --- the cache ------------------------------------------------------------------------------------------------
def cache_name(files: Sequence[str], hashes: Sequence[str], canvas: Canvas) -> str:
    """The cache files' name: the files (ids and contents), the canvas, and what decodes them (this code's version
    and Pillow's, whose decoders and resampling may change pixels between releases)."""
    import PIL

    digest = hashlib.sha256(f"v{CACHE_VERSION} pillow {PIL.__version__} {canvas.height}x{canvas.width} "
                            f"gray={canvas.grayscale}\n".encode())
    for name, sha in zip(files, hashes, strict=True):
        digest.update(f"{name}\0{sha}\n".encode())
    colour = "gray" if canvas.grayscale else "rgb"
    return f"folder-{canvas.height}x{canvas.width}-{colour}-{digest.hexdigest()[:32]}"


def _pixels(root: Path, files: Sequence[str], hashes: Sequence[str], canvas: Canvas, cache_dir: Path,
            threads: int) -> tuple[Any, dict[str, Any], bool]:
    """The images (an array, or StoredImages when large), what the cache records of them, and whether they came
    from the cache."""
    name = cache_name(files, hashes, canvas)
    images_path, meta_path = cache_dir / f"{name}.images.npy", cache_dir / f"{name}.json"
    meta = _cached_meta(images_path, meta_path)
    from_cache = meta is not None
    if meta is None:
        meta = _build(root, files, hashes, canvas, cache_dir, images_path, threads)
        atomic_write_text(meta_path, json.dumps(meta))
    stored = StoredImages(images_path)
    if len(stored) * int(np.prod(canvas.shape)) * 4 > IN_MEMORY_MAX_BYTES:
        return stored, meta, from_cache
    return stored[:], meta, from_cache


def _cached_meta(images_path: Path, meta_path: Path) -> dict[str, Any] | None:
    """The record of complete cache files (the record is written last), or None."""
    if not (images_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        rows = np.load(images_path, mmap_mode="r", allow_pickle=False).shape[0]
    except (OSError, ValueError):
        return None
    return cast(dict[str, Any], meta) if isinstance(meta, dict) and len(meta.get("ids", ())) == rows else None


def _build(root: Path, files: Sequence[str], hashes: Sequence[str], canvas: Canvas, cache_dir: Path,
           images_path: Path, threads: int) -> dict[str, Any]:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"project.source.cache_dir: {cache_dir} cannot be created ({exc.strerror}); "
                         "point it at a writable folder") from None
    check_disk(cache_dir, len(files) * int(np.prod(canvas.shape)))
    meta: dict[str, Any] = {"ids": [], "heights": [], "widths": [], "skipped": []}
    try:
        atomic_write(images_path, lambda tmp: _write_pixels(tmp, root, files, hashes, canvas, threads, meta))
    except PermissionError as exc:
        raise InputError(f"project.source.cache_dir: {cache_dir} is not writable ({exc.strerror}); "
                         "point it at a writable folder") from None
    return meta


def _write_pixels(tmp: str, root: Path, files: Sequence[str], hashes: Sequence[str], canvas: Canvas, threads: int,
                  meta: dict[str, Any]) -> None:
    """Decode every file a chunk at a time into ``tmp`` (an .npy of the images that decoded) and ``meta``."""
    tasks = [(str(root), f, h, canvas) for f, h in zip(_chunks(files), _chunks(hashes), strict=True)]
    with open(tmp, "wb") as handle:
        header_size = _write_header(handle, len(files), canvas)
        for chunk, decoded in zip(_chunks(files), in_order(_decode_chunk, tasks, threads), strict=True):
            for name, item in zip(chunk, decoded, strict=True):
                if item.pixels is None:
                    meta["skipped"].append([name, item.problem, item.detail])
                    continue
                handle.write(item.pixels.tobytes())
                meta["ids"].append(name)
                meta["heights"].append(item.height)
                meta["widths"].append(item.width)
        kept = len(meta["ids"])
        if kept == 0:
            _nothing_left(root, [Skip(*s) for s in meta["skipped"]])
        if kept < len(files):
            handle.seek(0)
            if _write_header(handle, kept, canvas) != header_size:
                raise RuntimeError("the .npy header changed size; cannot rewrite it in place")


def _write_header(handle: Any, n: int, canvas: Canvas) -> int:
    """An .npy header for ``n`` uint8 images; numpy pads it so that a smaller count fits the same bytes."""
    start = handle.tell()
    np.lib.format.write_array_header_1_0(
        handle, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                 "shape": (n, *canvas.shape)})
    return int(handle.tell() - start)

"""Items that are vectors: a file of embeddings computed elsewhere (one row per item), with ids and labels.

The file (``path``)
    ``.npy``: one 2-D numeric array (n, d). ``.npz``: the array named ``key`` (default ``embeddings``; without
    it, the file's only 2-D numeric array) and, optionally, an ``ids`` array (text or integers). ``.parquet``
    (read with pyarrow, which the project does not install; install it to use one): the column ``key`` of
    equal-length number lists, or else every numeric column other than ``id_column``; ids from ``id_column``.

Ids
    ``ids`` (a text file, one id per line, exactly as many lines as rows) first, else the file's own ids, else
    the row numbers "0", "1", ... Ids are text with surrounding whitespace removed. A row with a blank or repeated
    id, or a value that is not finite, is skipped.

Labels and per-item columns
    ``manifest``: the same CSV or JSON Lines file as the folder source reads (see ``plugins.sources.folder``: label,
    split, tags, other columns into ``extra``), keyed by its ``item_id`` column, or by ``path`` where it has no
    ``item_id`` (so the manifest of the folder the vectors were computed from serves as it is when the ids are
    those relative paths). Rows the manifest lacks are unlabelled; a manifest row naming an id the file lacks is
    skipped. An optional ``thumbnail`` column gives an image per item (a path relative to the manifest's folder),
    in ``extra["thumbnail"]`` as a full path, "" where there is none, for reports to show.

What the model sees
    ``images`` are the vectors themselves, (n, d) float32 as given (no scaling), and ``Dataset.kind`` is
    ``"embeddings"``: there are no pixels, so nothing that needs images (image metrics, encoders of pixels,
    pixel augmentation) applies. A float32 ``.npy`` with no row skipped is memory-mapped rather than read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plugins.arrays import Array
from plugins.errors import InputError
from plugins.sources.dataset import Dataset
from plugins.sources.folder import (
    Manifest,
    Skip,
    labelled,
    manifest_extra,
    manifest_split,
    read_manifest,
    report_skipped,
    resolve_classes,
)

__all__ = ["embeddings_file"]

# Rows checked for non-finite values at once, so a memory-mapped file is never read whole.
FINITE_CHECK_ROWS = 65536


def embeddings_file(
    path: str,
    ids: str | None = None,
    key: str = "embeddings",
    id_column: str = "id",
    manifest: str | None = None,
    classes: Sequence[Any] | None = None,
) -> Dataset:
    """The rows of ``path`` as items, (n, d) float32, labelled from ``manifest`` (see the module's description)."""
    file = Path(path).expanduser()
    vectors, own_ids = read_vectors(file, key, id_column)
    names = _ids(ids, own_ids, len(vectors), file)
    skipped: list[Skip] = []
    usable = _usable_rows(vectors, names, skipped)
    if not usable:
        first = f" (first: {skipped[0].file}: {skipped[0].reason})" if skipped else ""
        raise InputError(f"project.source.path: no usable row in {file}{first}")
    kept_ids = list(usable)
    described = None
    if manifest is not None:
        described = read_manifest(manifest, ("item_id", "path"), _plain_id, keep_columns=("thumbnail",))
        skipped += described.skipped
        _check_named(described, names, kept_ids, skipped)
        kept_ids = [i for i in kept_ids if i not in described.refused]
    rows = {} if described is None else described.rows
    label_names = [rows[i].label if i in rows else None for i in kept_ids]
    class_names = resolve_classes(classes, label_names)
    split = manifest_split(described, kept_ids)
    labels = labelled(label_names, class_names, kept_ids, split, skipped)
    chosen = labels > -2
    final_ids = [i for i, c in zip(kept_ids, chosen, strict=True) if c]
    extra: dict[str, Any] = {} if described is None else manifest_extra(described, final_ids)
    note = f" of {vectors.shape[1]} dimensions"
    if described is not None and "thumbnail" in described.header:
        extra["thumbnail"], missing = _thumbnails(described, final_ids)
        note += f", {missing:,} thumbnails not found" if missing else ""
    report_skipped(str(file), len(final_ids), skipped, 0, note)
    positions = np.array([usable[i] for i in final_ids], dtype=np.int64)
    every_row = len(positions) == len(vectors) and bool((positions == np.arange(len(vectors))).all())
    images = vectors if every_row and vectors.dtype == np.float32 else _float32_rows(vectors, positions)
    return Dataset(np.array(final_ids), images, labels[chosen], class_names,
                   None if split is None else split[chosen], extra, kind="embeddings",
                   skipped=tuple(sorted((s.file, s.reason) for s in skipped)))


def read_vectors(file: Path, key: str, id_column: str) -> tuple[Array, list[str] | None]:
    """The (n, d) numeric rows of ``file`` and its own ids, if it has any."""
    if not file.is_file():
        raise InputError(f"project.source.path: {file} is not a file")
    suffix = file.suffix.lower()
    try:
        if suffix == ".npy":
            vectors, own = np.load(file, mmap_mode="r", allow_pickle=False), None
        elif suffix == ".npz":
            vectors, own = _npz(file, key)
        elif suffix == ".parquet":
            vectors, own = _parquet(file, key, id_column)
        else:
            raise InputError(f"project.source.path: {file} is not .npy, .npz or .parquet")
    except (OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"project.source.path: {file} cannot be read ({exc})") from None
    if vectors.ndim != 2 or vectors.shape[0] < 1 or vectors.shape[1] < 1:
        raise InputError(f"project.source.path: {file} holds an array of shape {vectors.shape}; embeddings are "
                         "one row per item, (n, d)")
    if not (np.issubdtype(vectors.dtype, np.floating) or np.issubdtype(vectors.dtype, np.integer)):
        raise InputError(f"project.source.path: {file} holds {vectors.dtype} values, not numbers")
    return vectors, own


def _npz(file: Path, key: str) -> tuple[Array, list[str] | None]:
    with np.load(file, allow_pickle=False) as archive:
        names = list(archive.files)
        if key not in names:
            candidates = [n for n in names if n != "ids" and archive[n].ndim == 2]
            if len(candidates) != 1:
                raise InputError(f"project.source.key: {file} has no array '{key}' (its arrays: "
                                 f"{', '.join(names) or 'none'}); set project.source.key")
            key = candidates[0]
        vectors = archive[key]
        own = _id_texts(archive["ids"], file) if "ids" in names else None
    return vectors, own


def _id_texts(values: Array, file: Path) -> list[str]:
    if values.ndim != 1 or values.dtype.kind not in "iuUS":
        raise InputError(f"project.source.path: the 'ids' array of {file} must be one text or integer per row "
                         f"(got {values.dtype} {values.shape})")
    if values.dtype.kind == "S":
        return [v.decode("utf-8", "replace").strip() for v in values]
    return [str(v).strip() for v in values.tolist()]


def _parquet(file: Path, key: str, id_column: str) -> tuple[Array, list[str] | None]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"project.source.path: {file} is Parquet, which needs pyarrow (pip install pyarrow); "
                         "or save the vectors as .npy or .npz") from None
    table = pq.read_table(file)
    names = list(table.column_names)
    own = [("" if v is None else str(v)).strip() for v in table.column(id_column).to_pylist()] \
        if id_column in names else None
    if key in names:
        return _list_column(table.column(key).combine_chunks(), file, key), own
    numeric = [c for c in names if c != id_column and _is_number_type(table.schema.field(c).type)]
    if not numeric:
        raise InputError(f"project.source.key: {file} has no column '{key}' and no numeric columns")
    return np.column_stack([table.column(c).to_numpy() for c in numeric]), own


def _is_number_type(kind: Any) -> bool:
    import pyarrow.types as types

    return bool(types.is_floating(kind) or types.is_integer(kind))


def _list_column(values: Any, file: Path, key: str) -> Array:
    """A column of equal-length lists as an (n, d) array, without a Python object per number."""
    import pyarrow.compute as pc

    if values.null_count:
        raise InputError(f"project.source.path: column '{key}' of {file} has {values.null_count} empty rows")
    lengths = np.asarray(pc.list_value_length(values).to_numpy(zero_copy_only=False))
    if len(lengths) and (lengths != lengths[0]).any():
        raise InputError(f"project.source.path: the lists in column '{key}' of {file} differ in length "
                         f"({lengths.min()} to {lengths.max()})")
    flat = np.asarray(values.flatten().to_numpy(zero_copy_only=False))
    return flat.reshape(len(values), int(lengths[0]) if len(lengths) else 0)


def _ids(ids: str | None, own: list[str] | None, n: int, file: Path) -> list[str]:
    if ids is None:
        return own if own is not None else [str(i) for i in range(n)]
    listing = Path(ids).expanduser()
    try:
        lines = listing.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"project.source.ids: {listing} cannot be read ({exc})") from None
    while lines and not lines[-1].strip():  # trailing blank lines are the end of the file, not ids
        lines.pop()
    if len(lines) != n:
        raise InputError(f"project.source.ids: {listing} has {len(lines):,} lines and {file} {n:,} rows; give one id "
                         "per row, in row order")
    return [line.strip() for line in lines]


def _usable_rows(vectors: Array, names: Sequence[str], skipped: list[Skip]) -> dict[str, int]:
    """The row of each id that has one of its own and finite values, in row order; the others are listed in
    ``skipped``."""
    usable: dict[str, int] = {}
    for row, name in enumerate(names):
        if not name:
            skipped.append(Skip(f"row {row}", "blank id"))
        elif name in usable:
            skipped.append(Skip(name, "duplicate id", f"row {row}; row {usable[name]} is used"))
        else:
            usable[name] = row
    if np.issubdtype(vectors.dtype, np.floating):
        for start in range(0, len(vectors), FINITE_CHECK_ROWS):
            bad = ~np.isfinite(vectors[start : start + FINITE_CHECK_ROWS]).all(axis=1)
            for row in (start + np.flatnonzero(bad)).tolist():
                if usable.get(names[row]) == row:
                    skipped.append(Skip(names[row], "non-finite value", f"row {row}"))
                    del usable[names[row]]
    return usable


def _plain_id(text: str) -> str | None:
    return text or None


def _check_named(manifest: Manifest, names: Sequence[str], usable: Sequence[str], skipped: list[Skip]) -> None:
    """Skip manifest rows naming an id the file lacks (refusing a manifest that names none) and forget the rows
    of ids whose own row was skipped."""
    known = set(names)
    missing = [key for key in manifest.rows if key not in known]
    for key in missing:
        line = manifest.rows[key].line
        skipped.append(Skip(key, "id not in the embeddings file", f"{manifest.path.name} line {line}"))
    if len(missing) == len(manifest.rows) and not (manifest.refused & known):
        first = next(iter(manifest.rows), "")
        raise InputError(f"project.source.manifest: none of the {manifest.id_column} values in {manifest.path} is "
                         f"an id of the embeddings (first: '{first}', an id: '{usable[0]}')")
    present = set(usable)
    for key in [k for k in manifest.rows if k not in present]:
        del manifest.rows[key]


def _thumbnails(manifest: Manifest, ids: Sequence[str]) -> tuple[Array, int]:
    base = manifest.path.parent
    out = np.array([""] * len(ids), dtype=object)
    missing = 0
    for i, item in enumerate(ids):
        row = manifest.rows.get(item)
        value = None if row is None else row.values.get("thumbnail")
        if value is None or not str(value).strip():
            continue
        full = (base / str(value).strip()).expanduser()
        if full.is_file():
            out[i] = str(full.resolve())
        else:
            missing += 1
    return out, missing


def _float32_rows(vectors: Array, positions: Array) -> Array:
    """The rows at ``positions`` as float32, a block at a time (a memory-mapped file is never read whole)."""
    out = np.empty((len(positions), vectors.shape[1]), dtype=np.float32)
    for start in range(0, len(positions), FINITE_CHECK_ROWS):
        out[start : start + FINITE_CHECK_ROWS] = vectors[positions[start : start + FINITE_CHECK_ROWS]]
    return out

"""The run store: one SQLite file that holds everything a run knows, written one transaction per stage.

Tables
- ``meta``: key/value facts about the run (config hash, runner version, data fingerprint).
- ``items``: every item of the project, its split (``pool`` or ``test``) and, in simulation, its hidden truth.
- ``labels``: the labels the learner knows, with the round that acquired them (-1 = initial labels).
- ``rounds``: one row per evaluated round (labelled count, test accuracy, extra figures as JSON).
- ``selections``: the items each round chose, with score and rank (1 = label first).
- ``stages``: which stage of which round finished, and how long it took.
- ``blobs``: named binary values (fitted models, score arrays, embeddings, metric columns).
- ``array_files``: named arrays too large for a blob (``memmap_min_bytes`` and up), each in its own ``.npy``
  file under ``arrays/`` beside the store, read back memory-mapped. The file is written (atomically) inside the
  stage's transaction and the row names it, so a stage's arrays land with it; a file a killed stage left
  behind, or one whose row was dropped, is removed the next time the store opens.
- ``tags``: named tags on items (``to_label_next`` on a selection, items parked in Complete); filters read them.
- ``label_issues``: per round, the labelled items whose label looks wrong (given and suggested class, score).
- ``relabels``: per round, the suspects sent back for another look, with score and rank (1 = first).
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from plugins.files import atomic_write, save_npy
from runner.errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    idx INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL UNIQUE,
    split TEXT NOT NULL CHECK (split IN ('pool', 'test')),
    truth INTEGER
);
CREATE TABLE IF NOT EXISTS labels (
    idx INTEGER PRIMARY KEY REFERENCES items(idx),
    label INTEGER NOT NULL,
    round INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY,
    n_labeled INTEGER NOT NULL,
    test_accuracy REAL,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS selections (
    round INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    idx INTEGER NOT NULL REFERENCES items(idx),
    score REAL NOT NULL,
    PRIMARY KEY (round, rank)
);
CREATE TABLE IF NOT EXISTS stages (
    round INTEGER NOT NULL,
    stage TEXT NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (round, stage)
);
CREATE TABLE IF NOT EXISTS blobs (name TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS array_files (name TEXT PRIMARY KEY, file TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS tags (
    idx INTEGER NOT NULL REFERENCES items(idx),
    tag TEXT NOT NULL,
    round INTEGER NOT NULL,
    PRIMARY KEY (idx, tag)
);
CREATE TABLE IF NOT EXISTS label_issues (
    round INTEGER NOT NULL,
    idx INTEGER NOT NULL REFERENCES items(idx),
    given INTEGER NOT NULL,
    suggested INTEGER NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (round, idx)
);
CREATE TABLE IF NOT EXISTS relabels (
    round INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    idx INTEGER NOT NULL REFERENCES items(idx),
    score REAL NOT NULL,
    PRIMARY KEY (round, rank)
);
"""

# Parameters bound in one query (SQLite allows 32,766 since 3.32; older builds 999).
QUERY_BATCH = 900
# Rounds are numbered from 0; global stages (import) use this round number.
GLOBAL_ROUND = -1
TABLES = ("meta", "items", "labels", "rounds", "selections", "stages", "blobs", "tags")


class StoreError(ConfigError):
    """``state.sqlite`` exists but is not a usable run store (corrupt, truncated, or some other database)."""


class Store:
    """Thin typed access to ``state.sqlite``. Writes happen only inside :meth:`transaction`."""

    def __init__(self, path: str | Path, memmap_min_bytes: int | None = None) -> None:
        """``memmap_min_bytes``: arrays at least this large are kept in files (None: every array in a blob)."""
        self.path = Path(path)
        self.arrays_dir = self.path.parent / "arrays"
        self.memmap_min_bytes = memmap_min_bytes
        existed = self.path.is_file() and self.path.stat().st_size > 0
        self._in_tx = False
        self._unlink_after_commit: list[Path] = []
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise unusable(self.path, exc) from None
        try:
            if existed:
                self._check()
            self._conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL keeps every committed stage through a crash of the process (kill -9); only a
            # crash of the whole machine can lose the last commits, and resuming computes those stages again.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            with self.transaction():
                for statement in filter(str.strip, SCHEMA.split(";")):
                    self._conn.execute(statement)
            self._remove_unreferenced_files()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise unusable(self.path, exc) from None
        except StoreError:
            self._conn.close()
            raise

    def _check(self) -> None:
        """Refuse a damaged file, or a database that is not a run store, before anything is written to it."""
        problem = store_problem(self._conn)
        if problem is not None:
            raise StoreError(f"{self.path} {problem}; {START_OVER}")

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """All writes inside the block land together or not at all."""
        if self._in_tx:
            raise RuntimeError("nested store transaction")
        self._conn.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield self
        except BaseException:
            self._conn.execute("ROLLBACK")
            self._unlink_after_commit.clear()
            raise
        else:
            self._conn.execute("COMMIT")
            # Only once no committed row names them; a kill before this leaves them to the next opening.
            for path in self._unlink_after_commit:
                path.unlink(missing_ok=True)
            self._unlink_after_commit.clear()
        finally:
            self._in_tx = False

    def _write(self, sql: str, params: Sequence[Any] | None = None) -> None:
        if not self._in_tx:
            raise RuntimeError("store writes must happen inside a transaction")
        self._conn.execute(sql, params or ())

    def _write_many(self, sql: str, rows: Iterator[Sequence[Any]] | Sequence[Sequence[Any]]) -> None:
        if not self._in_tx:
            raise RuntimeError("store writes must happen inside a transaction")
        self._conn.executemany(sql, rows)

    # --- meta -------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # --- items and labels -------------------------------------------------------------------------
    def add_items(
        self, item_ids: Sequence[str], splits: Sequence[str], truths: Sequence[int | None], start: int = 0
    ) -> None:
        """``start``: index of the first new item (a platform project gains items between rounds)."""
        self._write_many(
            "INSERT INTO items(idx, item_id, split, truth) VALUES (?, ?, ?, ?)",
            ((i, str(item), split, None if t is None else int(t))
             for i, (item, split, t) in enumerate(zip(item_ids, splits, truths, strict=True), start)),
        )

    def item_ids(self) -> list[str]:
        return [row[0] for row in self._conn.execute("SELECT item_id FROM items ORDER BY idx")]

    def split_indices(self, split: str) -> np.ndarray:
        rows = self._conn.execute("SELECT idx FROM items WHERE split = ? ORDER BY idx", (split,)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def set_split(self, indices: np.ndarray, split: str) -> None:
        """Move items to another split (a platform item whose label joined the held-out test share)."""
        self._write_many("UPDATE items SET split = ? WHERE idx = ?", ((split, int(i)) for i in indices))

    def splits(self) -> np.ndarray:
        """Every item's split, in index order."""
        return np.array([row[0] for row in self._conn.execute("SELECT split FROM items ORDER BY idx")], dtype=object)

    def truths(self, indices: np.ndarray) -> np.ndarray:
        """The hidden truth of ``indices``, in their order; -1 marks an item whose truth is unknown (a real
        project's pool), which the oracle refuses to reveal. Read by primary key, a batch at a time, so asking
        about a selection costs nothing like reading a million-item pool."""
        wanted = [int(i) for i in indices]
        lookup: dict[int, int | None] = {}
        for start in range(0, len(wanted), QUERY_BATCH):
            batch = wanted[start:start + QUERY_BATCH]
            marks = ",".join("?" * len(batch))
            lookup.update(self._conn.execute(f"SELECT idx, truth FROM items WHERE idx IN ({marks})", batch))
        return np.array([-1 if lookup[i] is None else lookup[i] for i in wanted], dtype=np.int64)

    def add_labels(self, indices: np.ndarray, labels: np.ndarray, round_: int) -> None:
        self._write_many(
            "INSERT INTO labels(idx, label, round) VALUES (?, ?, ?)",
            ((int(i), int(y), round_) for i, y in zip(indices, labels, strict=True)),
        )

    def replace_labels(self, indices: np.ndarray, labels: np.ndarray) -> None:
        """Change known labels (an annotator corrected them), keeping the round that acquired them."""
        self._write_many(
            "UPDATE labels SET label = ? WHERE idx = ?",
            ((int(y), int(i)) for i, y in zip(indices, labels, strict=True)),
        )

    def delete_labels(self, indices: np.ndarray) -> None:
        self._write_many("DELETE FROM labels WHERE idx = ?", ((int(i),) for i in indices))

    def labeled(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices and labels of every labelled item, in index order."""
        rows = self._conn.execute("SELECT idx, label FROM labels ORDER BY idx").fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        arr = np.array(rows, dtype=np.int64)
        return arr[:, 0], arr[:, 1]

    # --- rounds, selections, stages ---------------------------------------------------------------
    def record_round(self, round_: int, n_labeled: int, test_accuracy: float | None, extra: dict[str, Any]) -> None:
        self._write(
            "INSERT OR REPLACE INTO rounds(round, n_labeled, test_accuracy, extra) VALUES (?, ?, ?, ?)",
            (round_, n_labeled, test_accuracy, json.dumps(extra, sort_keys=True)),
        )

    def rounds(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT round, n_labeled, test_accuracy, extra FROM rounds ORDER BY round"
        ).fetchall()
        return [
            {"round": r, "n_labeled": n, "test_accuracy": acc, **json.loads(extra)} for r, n, acc, extra in rows
        ]

    def record_selection(self, round_: int, indices: np.ndarray, scores: np.ndarray) -> None:
        self._write_many(
            "INSERT INTO selections(round, rank, idx, score) VALUES (?, ?, ?, ?)",
            ((round_, rank, int(i), float(s)) for rank, (i, s) in enumerate(zip(indices, scores, strict=True), 1)),
        )

    def selection(self, round_: int) -> list[tuple[str, float, int]]:
        """``(item_id, score, rank)`` rows of one round, rank order."""
        return self._conn.execute(
            "SELECT items.item_id, selections.score, selections.rank FROM selections "
            "JOIN items ON items.idx = selections.idx WHERE round = ? ORDER BY rank",
            (round_,),
        ).fetchall()

    def selected_indices(self, round_: int) -> np.ndarray:
        rows = self._conn.execute(
            "SELECT idx FROM selections WHERE round = ? ORDER BY rank", (round_,)
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def mark_done(self, round_: int, stage: str, seconds: float) -> None:
        self._write("INSERT INTO stages(round, stage, seconds) VALUES (?, ?, ?)", (round_, stage, seconds))

    def is_done(self, round_: int, stage: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM stages WHERE round = ? AND stage = ?", (round_, stage)
        ).fetchone()
        return row is not None

    def stage_seconds(self, round_: int) -> dict[str, float]:
        rows = self._conn.execute(
            "SELECT stage, seconds FROM stages WHERE round = ? ORDER BY rowid", (round_,)
        ).fetchall()
        return {stage: seconds for stage, seconds in rows}

    # --- blobs ------------------------------------------------------------------------------------
    def put_blob(self, name: str, data: bytes) -> None:
        self._write("INSERT OR REPLACE INTO blobs(name, data) VALUES (?, ?)", (name, sqlite3.Binary(data)))

    def get_blob(self, name: str) -> bytes | None:
        row = self._conn.execute("SELECT data FROM blobs WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def delete_blobs(self, prefix: str) -> None:
        """Blobs and array files whose name starts with ``prefix``."""
        pattern = prefix.replace("_", "\\_") + "%"
        self._write("DELETE FROM blobs WHERE name LIKE ? ESCAPE '\\'", (pattern,))
        files = self._conn.execute("SELECT file FROM array_files WHERE name LIKE ? ESCAPE '\\'", (pattern,))
        self._unlink_after_commit.extend(self.arrays_dir / row[0] for row in files.fetchall())
        self._write("DELETE FROM array_files WHERE name LIKE ? ESCAPE '\\'", (pattern,))

    def put_array(self, name: str, array: np.ndarray) -> None:
        """Keep ``array`` under ``name``: in a blob, or in its own file when it is at least memmap_min_bytes."""
        array = np.asarray(array)
        if self.memmap_min_bytes is None or array.nbytes < self.memmap_min_bytes:
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
            self.put_blob(name, buffer.getvalue())
            self._drop_array_file(name)
            return
        if not self._in_tx:
            raise RuntimeError("store writes must happen inside a transaction")
        file = name.replace("/", "__") + ".npy"
        self.arrays_dir.mkdir(exist_ok=True)
        atomic_write(self.arrays_dir / file, lambda tmp: save_npy(tmp, array))
        self._write("DELETE FROM blobs WHERE name = ?", (name,))
        self._write("INSERT OR REPLACE INTO array_files(name, file) VALUES (?, ?)", (name, file))

    def _drop_array_file(self, name: str) -> None:
        row = self._conn.execute("SELECT file FROM array_files WHERE name = ?", (name,)).fetchone()
        if row is not None:
            self._unlink_after_commit.append(self.arrays_dir / row[0])
            self._write("DELETE FROM array_files WHERE name = ?", (name,))

    def get_array(self, name: str) -> np.ndarray | None:
        """The array stored under ``name`` (read-only and memory-mapped when it lives in a file), or None."""
        data = self.get_blob(name)
        if data is not None:
            return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))
        row = self._conn.execute("SELECT file FROM array_files WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        path = self.arrays_dir / row[0]
        if not path.is_file():
            raise StoreError(f"{self.path} names {path}, which is missing; {START_OVER}")
        mapped: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
        return mapped

    def _remove_unreferenced_files(self) -> None:
        """Array files no committed row names: a stage killed before its commit, or a deletion cut short."""
        if not self.arrays_dir.is_dir():
            return
        named = {row[0] for row in self._conn.execute("SELECT file FROM array_files")}
        for path in self.arrays_dir.iterdir():
            if path.name not in named:
                path.unlink(missing_ok=True)

    def array(self, name: str) -> np.ndarray:
        """An array an earlier stage of this run stored; its absence means the store was changed by hand."""
        found = self.get_array(name)
        if found is None:
            raise StoreError(f"{self.path} lacks '{name}', which an earlier stage recorded; {START_OVER}")
        return found

    # --- label issues and relabels ----------------------------------------------------------------
    def record_label_issues(self, round_: int, indices: np.ndarray, given: np.ndarray, suggested: np.ndarray,
                            scores: np.ndarray) -> None:
        self._write("DELETE FROM label_issues WHERE round = ?", (round_,))
        self._write_many(
            "INSERT INTO label_issues(round, idx, given, suggested, score) VALUES (?, ?, ?, ?, ?)",
            ((round_, int(i), int(g), int(s), float(v)) for i, g, s, v in zip(
                indices, given, suggested, scores, strict=True)),
        )

    def label_issues(self, round_: int | None = None) -> list[tuple[int, int, int, int, float]]:
        """``(round, idx, given, suggested, score)`` rows, by round, then most suspect first, then index."""
        where, params = ("WHERE round = ?", (round_,)) if round_ is not None else ("", ())
        return self._conn.execute(
            f"SELECT round, idx, given, suggested, score FROM label_issues {where} ORDER BY round, score DESC, idx",
            params,
        ).fetchall()

    def record_relabels(self, round_: int, indices: np.ndarray, scores: np.ndarray) -> None:
        self._write_many(
            "INSERT INTO relabels(round, rank, idx, score) VALUES (?, ?, ?, ?)",
            ((round_, rank, int(i), float(s)) for rank, (i, s) in enumerate(zip(indices, scores, strict=True), 1)),
        )

    def relabel_rows(self, round_: int) -> list[tuple[str, float, int]]:
        """``(item_id, score, rank)`` of the items a round sent back, rank order."""
        return self._conn.execute(
            "SELECT items.item_id, relabels.score, relabels.rank FROM relabels "
            "JOIN items ON items.idx = relabels.idx WHERE round = ? ORDER BY rank",
            (round_,),
        ).fetchall()

    def relabel_indices(self, round_: int) -> np.ndarray:
        """Items a round sent back for relabelling, rank order."""
        rows = self._conn.execute("SELECT idx FROM relabels WHERE round = ? ORDER BY rank", (round_,)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def relabeled_before(self, round_: int) -> np.ndarray:
        """Every item a round before ``round_`` sent back for relabelling, index order."""
        rows = self._conn.execute(
            "SELECT DISTINCT idx FROM relabels WHERE round < ? ORDER BY idx", (round_,)
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def relabel_count(self, before: int) -> int:
        """How many relabels rounds before ``before`` asked for (an item sent back twice counts twice)."""
        return int(self._conn.execute("SELECT COUNT(*) FROM relabels WHERE round < ?", (before,)).fetchone()[0])

    def forget_round(self, round_: int) -> None:
        """Drop everything a round computed, so it is computed again (its inputs changed before it acted)."""
        for table in ("stages", "selections", "rounds", "label_issues", "relabels"):
            self._write(f"DELETE FROM {table} WHERE round = ?", (round_,))
        for prefix in ("model/", "scores/", "candidates/", "predicted/"):
            self.delete_blobs(f"{prefix}{round_:03d}")

    # --- tags -------------------------------------------------------------------------------------
    def add_tags(self, indices: np.ndarray, tag: str, round_: int) -> None:
        self._write_many(
            "INSERT OR REPLACE INTO tags(idx, tag, round) VALUES (?, ?, ?)",
            ((int(i), tag, round_) for i in indices),
        )

    def remove_tags(self, indices: np.ndarray, tag: str) -> None:
        self._write_many("DELETE FROM tags WHERE idx = ? AND tag = ?", ((int(i), tag) for i in indices))

    def tagged(self, tag: str) -> np.ndarray:
        rows = self._conn.execute("SELECT idx FROM tags WHERE tag = ? ORDER BY idx", (tag,)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def tag_rows(self) -> list[tuple[str, str, int]]:
        """``(item_id, tag, round)`` for every tag, in item order."""
        return self._conn.execute(
            "SELECT items.item_id, tags.tag, tags.round FROM tags JOIN items ON items.idx = tags.idx "
            "ORDER BY tags.idx, tags.tag"
        ).fetchall()

    def tags(self) -> dict[int, set[str]]:
        """Tags per item index (items without tags are absent)."""
        found: dict[int, set[str]] = {}
        for idx, tag in self._conn.execute("SELECT idx, tag FROM tags ORDER BY idx, tag"):
            found.setdefault(idx, set()).add(tag)
        return found


START_OVER = "move it away, or pick a new hydra.run.dir, to start the run over"


def store_problem(conn: sqlite3.Connection) -> str | None:
    """What makes an existing database unusable as a run store (damage, or another kind of database), or None.
    No table at all is a store killed while it was being created (its tables come in one transaction)."""
    problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        return f"is damaged ({problems[0]})"
    found = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in TABLES if t not in found]
    if missing and found:
        return f"is not a run store (no '{missing[0]}' table)"
    return None


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that changes nothing beside the store. A store closed cleanly has no write-ahead log, and is
    read as an immutable file (a read-only connection would still leave a shared-memory file beside it); one
    with a log (a run killed, or running) is read through it."""
    uri = path.resolve().as_uri()
    wal = path.with_name(path.name + "-wal")
    return sqlite3.connect(f"{uri}?mode=ro" if wal.exists() else f"{uri}?mode=ro&immutable=1", uri=True)


def check_readable(path: Path) -> None:
    """Refuse, reading only, a ``state.sqlite`` that exists and is not a usable run store."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        conn = connect_read_only(path)
    except sqlite3.Error as exc:
        raise unusable(path, exc) from None
    try:
        problem = store_problem(conn)
    except sqlite3.DatabaseError as exc:
        raise unusable(path, exc) from None
    finally:
        conn.close()
    if problem is not None:
        raise StoreError(f"{path} {problem}; {START_OVER}")


def unusable(path: Path, exc: BaseException) -> StoreError:
    """The one-line error for a store SQLite cannot read (a truncated or overwritten file)."""
    return StoreError(f"{path} is not a usable run store ({exc}); {START_OVER}")


def read_meta(path: Path, key: str) -> str | None:
    """One ``meta`` value of the store at ``path``, read-only; None when there is no readable store or value."""
    found = read_only(path, "SELECT value FROM meta WHERE key = ?", (key,))
    return None if found is None else found[0]


def read_only(path: Path, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
    """The first row ``sql`` finds in the store at ``path``, read-only (probing a run never writes to it); None
    when there is no readable store or no row. A killed run's write-ahead log cannot be recovered read-only: such
    a run is unfinished anyway, and the run itself recovers it."""
    if not path.is_file():
        return None
    try:
        conn = connect_read_only(path)
    except sqlite3.Error:
        return None
    try:
        row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
        return row
    except sqlite3.Error:
        return None
    finally:
        conn.close()

"""The labeller of the file-based human loop (``loop.mode: human``, ``act=files``): any labelling tool, or a
spreadsheet, labels the batches.

One invocation works on one round of a fixed project directory (``hydra.run.dir``), whose store carries the state:

1. pull (:meth:`FilesLabeller.start`): the project's items (files new in the folder join) and the answers of the
   labels file (``act.labels``, default ``labels.csv`` in the project directory; CSV with ``item_id`` and
   ``label`` columns, any others ignored, so a filled-in copy of a round's file serves) are compared with the
   store. An item's label is its last answer in the file, else the label the source gives (a manifest's
   ``label``, a class folder): the source's labels are the initial labels. Answers that change something open
   the next round, whose ``pull`` stage records them in one transaction, as acquired in the round before (the
   round whose file was out when they came; -1 before round 0); a round computed but not yet written out when
   they came is computed again. Without new answers the open round stands: its files are written again, the
   same bytes, and the store does not change. A row naming no item of the project or a test item, or (with
   ``project.source.classes``) a class not among them, is listed in ``labels_rejected.csv`` and counted in the
   console line; without ``project.source.classes`` an unknown class is refused before anything is written,
   since it may be a class the project should have had.
2. the round driver's stages (``runner.rounds``): train, audit, evaluate, stop?, score, select. Accuracy is
   measured on the labelled ``split=test`` items of the manifest; with none it is n/a: no split is invented,
   every label a person gives goes to training.
3. label (:meth:`FilesLabeller.label`): the round's ``act`` stage records its batch in the store: the selection
   (``selected``), the label suspects of ``selection.relabel_share`` (``label suspect``: the label given, and the
   one a model that never saw it suggests) and the items asked for before and not answered yet (``still open``),
   each with the round model's suggestion; ``to_label/round_NNN.csv`` and ``to_label/round_NNN.html`` are written
   from that record, and the invocation ends.

An item asked for and not answered is in the annotators' hands: neither trained on nor a candidate, so nothing is
asked twice. The round reads that from ``Dataset.extra["unconfirmed_label"]`` as it does for a platform's labels
not trusted yet; the value is the class suggested when the item was asked (0 where no model suggested one). A
label suspect is asked once, in the round that found it; its answer, whenever it comes, replaces its label.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plugins.files import atomic_write_text
from plugins.sources.dataset import Dataset
from runner import artifacts, html_report, stages
from runner.errors import ConfigError
from runner.labellers import Session, source_tags
from runner.platform_labeller import check_project_dir, claim_project, project_round_figures
from runner.rundir import ConfigRecord
from runner.store import GLOBAL_ROUND, Store, read_meta

log = logging.getLogger("runner")

SELECTED, SUSPECT, STILL_OPEN = "selected", "label suspect", "still open"
REJECTED_FILE = "labels_rejected.csv"
# A row of a labels file that was not used: (line, item_id, label, reason).
Rejected = tuple[int, str, str, str]


# --- the labels file ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answers:
    """What a labels file says: the last usable answer per item id (a class index), the rows not used, and how
    many rows gave an answer."""

    path: Path
    exists: bool = False
    labels: dict[str, int] = field(default_factory=dict)
    rejected: tuple[Rejected, ...] = ()
    rows: int = 0


def read_answers(path: Path, data: Dataset, declared: bool) -> Answers:
    """The answers of ``path`` for the items of ``data``; ``declared``: the classes are the config's
    (``project.source.classes``), so an answer naming another class is a row to list, not a class to refuse."""
    if not path.exists():
        return Answers(path)
    if not path.is_file():
        raise ConfigError(f"act.labels: {path} is not a file")
    ids = {str(i) for i in data.item_ids}
    split = np.asarray(data.split).astype(str) if data.split is not None else None
    tests = set() if split is None else {str(i) for i in np.asarray(data.item_ids)[split == "test"]}
    classes = {name: k for k, name in enumerate(data.class_names)}
    labels: dict[str, int] = {}
    rejected: list[Rejected] = []
    rows = 0
    for line, item, label in _records(path):
        if not label:  # a row still waiting for its answer (a filled-in copy of a round's file)
            continue
        rows += 1
        reason = _unusable(item, label, ids, tests, classes)
        if reason is None:
            labels[item] = classes[label]
        elif reason == "unknown class" and not declared:
            known = ", ".join(data.class_names) or "none yet"
            raise ConfigError(
                f"act.labels: {path} line {line}: class '{label}' appears only in the labels file (the project's "
                f"classes: {known}); correct the row, or name every class in project.source.classes (rows of "
                f"other classes are then listed in {REJECTED_FILE})"
            )
        else:
            rejected.append((line, item, label, reason))
    return Answers(path, True, labels, tuple(rejected), rows)


def _unusable(item: str, label: str, ids: set[str], tests: set[str], classes: dict[str, int]) -> str | None:
    if not item:
        return "no item_id"
    if item not in ids:
        return "unknown item id"
    if item in tests:
        return "a test item (its label is the manifest's)"
    if label not in classes:
        return "unknown class"
    return None


def _records(path: Path) -> list[tuple[int, str, str]]:
    """``(line, item_id, label)`` of every row, stripped; a file that is not CSV text with both columns is
    refused in one line."""

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"act.labels: {path} is not a CSV file of answers with item_id and label columns ({why})")

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"act.labels: {path} cannot be read ({exc.strerror})") from None
    if b"\0" in raw:
        raise refuse("it holds binary data")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise refuse("it is not UTF-8 text") from None
    if not text.strip():
        return []
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in ("item_id", "label") if c not in header]
        if missing:
            first = text.splitlines()[0][:60]
            raise refuse(f"no {' or '.join(missing)} column; its first line: {first!r}")
        reader.fieldnames = header
        return [(reader.line_num, (row.get("item_id") or "").strip(), (row.get("label") or "").strip())
                for row in reader]
    except csv.Error as exc:
        raise refuse(f"line {reader.line_num}: {exc}") from None


# --- what the store lacks -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """How the store must change to agree with the project's items and the answers."""

    first_new: int  # index of the first item new to the store
    new_items: list[str]
    new_splits: list[str]
    tags: dict[str, np.ndarray]  # the source's tags of the new items
    new: dict[int, int]  # labels of items that had none
    changed: dict[int, int]
    removed: list[int]  # labels the source no longer gives (a manifest row edited)
    moved: dict[str, np.ndarray]  # split -> items the manifest moved there

    @property
    def any(self) -> bool:
        return bool(self.new_items or self.new or self.changed or self.removed
                    or any(len(v) for v in self.moved.values()))

    def writer(self, round_: int) -> stages.Writer:
        acquired = round_ - 1 if round_ > 0 else GLOBAL_ROUND

        def write(tx: Store) -> None:
            if self.new_items:
                tx.add_items(self.new_items, self.new_splits, [None] * len(self.new_items), start=self.first_new)
            for tag, indices in self.tags.items():
                tx.add_tags(indices, tag, acquired)
            if self.new:
                tx.add_labels(np.array(list(self.new)), np.array(list(self.new.values())), acquired)
            if self.changed:
                tx.replace_labels(np.array(list(self.changed)), np.array(list(self.changed.values())))
            if self.removed:
                tx.delete_labels(np.array(self.removed))
            for name, indices in self.moved.items():
                tx.set_split(indices, name)

        return write


def compare(data: Dataset, store: Store, answers: Answers) -> Change:
    """What the store lacks of ``data`` (item i is the store's item i; new items last) and ``answers``."""
    ids = [str(i) for i in data.item_ids]
    n, n_stored = len(ids), len(store.item_ids())
    split = np.asarray(data.split).astype(str) if data.split is not None else np.full(n, "pool")
    wanted = np.asarray(data.labels, dtype=np.int64).copy()
    position = {item: i for i, item in enumerate(ids)}
    for item, label in answers.labels.items():
        wanted[position[item]] = label
    # Test items' labels are the source's, read at evaluation; they never enter training.
    wanted[split != "pool"] = -1
    target = {i: int(wanted[i]) for i in np.flatnonzero(wanted >= 0).tolist()}
    known_idx, known_labels = store.labeled()
    known = dict(zip(known_idx.tolist(), known_labels.tolist(), strict=True))
    moved = np.flatnonzero(store.splits() != split[:n_stored]) if n_stored else np.zeros(0, np.int64)
    return Change(
        first_new=n_stored,
        new_items=ids[n_stored:],
        new_splits=[str(s) for s in split[n_stored:]],
        tags=source_tags(data, np.arange(n_stored, n)),
        new={i: y for i, y in target.items() if i not in known},
        changed={i: y for i, y in target.items() if i in known and known[i] != y},
        removed=sorted(set(known) - set(target)),
        moved={name: moved[split[moved] == name] for name in ("pool", "test")},
    )


# --- what has been asked --------------------------------------------------------------------------------------
def batch_blob(round_: int) -> str:
    return f"to_label/{round_:03d}"


def read_batch(store: Store, round_: int) -> dict[str, Any]:
    blob = store.get_blob(batch_blob(round_))
    if blob is None:
        raise ConfigError(f"{store.path} lacks the batch of round {round_}, which its act stage recorded; move it "
                          "away, or pick a new hydra.run.dir, to start the project over")
    found: dict[str, Any] = json.loads(blob)
    return found


def open_items(store: Store) -> dict[int, dict[str, Any]]:
    """Items asked for (selected in a round whose file was written) and not labelled yet: the row that asked."""
    labelled = set(store.labeled()[0].tolist())
    found: dict[int, dict[str, Any]] = {}
    round_ = 0
    while store.is_done(round_, "act"):
        for row in read_batch(store, round_)["rows"]:
            if row["reason"] == SELECTED and row["index"] not in labelled:
                found[int(row["index"])] = row
        round_ += 1
    return found


def last_pulled(store: Store) -> int | None:
    """The newest round whose answers were read (rounds open one after another), or None before the first."""
    round_ = 0
    while store.is_done(round_, "pull"):
        round_ += 1
    return round_ - 1 if round_ else None


# --- the labeller ---------------------------------------------------------------------------------------------
class FilesLabeller:
    """Annotators working from files: one round per invocation (see the module docstring)."""

    knows_truth = False
    items_change = True

    def __init__(self, answers: Answers, identity: str, record: ConfigRecord, project_name: str,
                 folder: Path | None, thumbnail_px: int) -> None:
        """``folder``: where an item's file is, its id being the path below it (None: items are not files)."""
        self.answers = answers
        self.identity = identity
        self.record = record
        self.project_name = project_name
        self.folder = folder
        self.thumbnail_px = thumbnail_px
        self.asked: dict[str, Any] | None = None  # the batch this invocation wrote out

    # --- before the rounds --------------------------------------------------------------------------------
    def check(self, run_dir: Path) -> None:
        check_project_dir(self.identity, run_dir)
        state = run_dir / "state.sqlite"
        if read_meta(state, "platform_identity") is None and read_meta(state, "config_sha256") is not None:
            raise ConfigError(f"{run_dir} holds a simulated run; the file loop needs a project directory of its own "
                              "(a new hydra.run.dir)")

    def claim(self, store: Store, run_dir: Path, data: Dataset) -> Dataset:
        aligned = claim_project(store, run_dir, data, self.identity, self.record, self.project_name)
        artifacts.write_skipped_files(run_dir, data.skipped)
        held = np.full(len(aligned.item_ids), -1, dtype=np.int64)
        for idx, row in open_items(store).items():
            held[idx] = row["suggested"] if row["suggested"] is not None else 0
        return dataclasses.replace(aligned, extra={**aligned.extra, "unconfirmed_label": held}, kind=data.kind,
                                   skipped=data.skipped)

    def start(self, session: Session) -> int:
        """Read the answers; the round to work on: the next one when they changed something, else the open one."""
        store = session.store
        round_ = last_pulled(store)
        change = compare(session.data, store, self.answers)
        artifacts.write_rejected_answers(session.run_dir / REJECTED_FILE, self.answers.rejected)
        log.info(self.pull_line(session, change))
        if round_ is None:
            round_ = 0
        elif not change.any:
            return round_
        elif store.is_done(round_, "act"):
            round_ += 1
        else:
            log.info(f"round {round_} was computed before these answers came; computing it again")
            with store.transaction() as tx:
                tx.forget_round(round_)
        session.stage(round_, "pull", lambda: change.writer(round_))
        return round_

    def pull_line(self, session: Session, change: Change) -> str:
        """The console's line on what the answers and the source brought."""
        answers = self.answers
        if not answers.exists:
            parts = [f"no answers yet ({answers.path} does not exist)"]
        else:
            parts = [f"{answers.path.name}: {answers.rows:,} answers"]
            if answers.rejected:
                counts = Counter(reason for *_, reason in answers.rejected)
                listed = ", ".join(f"{n:,} {reason}" for reason, n in counts.most_common())
                parts.append(f"{len(answers.rejected):,} rejected ({listed}; each in {REJECTED_FILE})")
        if change.new_items:
            parts.append(f"{len(change.new_items):,} new items")
        parts.append(f"{len(change.new):,} new labels")
        if change.changed or change.removed:
            parts.append(f"{len(change.changed):,} changed, {len(change.removed):,} removed")
        waiting = open_items(session.store)
        answered = sum(i in change.new for i in waiting)
        parts.append(f"{len(waiting) - answered:,} items asked for and still open")
        split = session.data.split
        if split is None or not (np.asarray(split).astype(str) == "test").any():
            parts.append("no test items (split=test in the manifest): test accuracy is n/a")
        return "; ".join(parts)

    # --- a round ------------------------------------------------------------------------------------------
    def round_figures(self, session: Session, round_: int) -> dict[str, Any]:
        return project_round_figures(session, round_)

    def label(self, session: Session, round_: int) -> str | None:
        """Record the round's batch (once), write its files, and end the invocation: the round waits for answers."""
        session.stage(round_, "act", lambda: self.ask(session, round_))
        batch = read_batch(session.store, round_)
        self.write_files(session, batch)
        self.asked = batch
        return "waiting_for_answers"

    def ask(self, session: Session, round_: int) -> stages.Writer:
        """The round's batch in the order to label it: the selection, the label suspects, the items still open
        from earlier rounds; each with what the round's model suggests. The round's model and scores go."""
        store, data = session.store, session.data
        names = list(data.class_names)
        selected = store.selected_indices(round_)
        scores = [score for _, score, _ in store.selection(round_)]
        suspects = store.relabel_indices(round_)
        issues = {idx: (given, suggested, score) for _, idx, given, suggested, score in store.label_issues(round_)}
        waiting = sorted(open_items(store).items(), key=lambda kv: (kv[1]["asked_in"], kv[1]["rank"]))
        order = np.concatenate([selected, suspects, np.array([i for i, _ in waiting], dtype=np.int64)])
        probs = session.view(round_).probs(order)
        suggested = [None] * len(order) if probs is None else [(int(p.argmax()), float(p.max())) for p in probs]
        rows = [self.row(data, int(i), SELECTED, round_, score, suggested[k])
                for k, (i, score) in enumerate(zip(selected.tolist(), scores, strict=True))]
        for i in suspects.tolist():
            given, other, score = issues[i]
            rows.append(self.row(data, i, SUSPECT, round_, score, (other, None), given=names[given]))
        for k, (i, asked) in enumerate(waiting, len(selected) + len(suspects)):
            rows.append(self.row(data, i, STILL_OPEN, asked["asked_in"], asked["score"], suggested[k]))
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
        blob = json.dumps({"round": round_, "rows": rows}, sort_keys=True).encode()

        def write(tx: Store) -> None:
            tx.put_blob(batch_blob(round_), blob)
            for prefix in stages.ROUND_BLOBS:
                tx.delete_blobs(f"{prefix}{round_:03d}")

        return write

    def row(self, data: Dataset, idx: int, reason: str, asked_in: int, score: float,
            suggestion: tuple[int, float | None] | None, given: str = "") -> dict[str, Any]:
        """One item of a batch, as ``to_label/round_NNN.csv`` writes it (``index``, ``suggested``: the store's)."""
        names = list(data.class_names)
        return {
            "rank": 0, "index": idx, "item_id": str(data.item_ids[idx]), "path": self.path_of(data, idx),
            "score": float(score), "suggested": None if suggestion is None else suggestion[0],
            "suggested_label": "" if suggestion is None else names[suggestion[0]],
            "suggested_probability": None if suggestion is None else suggestion[1],
            "reason": reason, "given_label": given, "asked_in": asked_in,
        }

    def path_of(self, data: Dataset, idx: int) -> str:
        """The item's file: below the folder, or an embeddings source's thumbnail; "" where there is none."""
        if data.kind == "embeddings":
            column = data.extra.get("thumbnail")
            return "" if column is None else str(column[idx] or "")
        return "" if self.folder is None else str(self.folder / str(data.item_ids[idx]))

    def write_files(self, session: Session, batch: dict[str, Any]) -> None:
        """``to_label/round_NNN.csv`` and ``.html`` from the recorded batch: the same record, the same bytes."""
        run_dir, data, round_ = session.run_dir, session.data, int(batch["round"])
        rows = batch["rows"]
        csv_path = artifacts.to_label_path(run_dir, round_, ".csv")
        artifacts.write_to_label_csv(csv_path, rows)
        tiles = []
        for row in rows:
            found = html_report.item_thumbnail(data, int(row["index"]), self.thumbnail_px)
            uri, side = found if found is not None else (None, 0)
            tiles.append({**row, "img": uri, "small": side < 48})
        labels = self.answers.path
        shown = labels.name if labels.parent.resolve() == run_dir.resolve() else str(labels)
        page = html_report.batch_page(self.project_name, round_, tiles, batch_counts(rows), csv_path.name, shown,
                                      list(data.class_names))
        atomic_write_text(artifacts.to_label_path(run_dir, round_, ".html"), page)

    # --- after the rounds ---------------------------------------------------------------------------------
    def summary(self, session: Session, stopped: str) -> dict[str, Any]:
        return {"mode": "human", "open_round": last_pulled(session.store),
                "open_items": len(open_items(session.store))}

    def conclude(self, session: Session, summary: dict[str, Any]) -> None:
        if self.asked is None:
            return
        round_, rows = int(self.asked["round"]), self.asked["rows"]
        where = artifacts.to_label_path(session.run_dir, round_, ".csv").relative_to(session.run_dir)
        log.info(f"round {round_}: {len(rows)} to label in {where} (pictures: {where.with_suffix('.html')}): "
                 f"{', '.join(batch_counts(rows))}; write the answers to {self.answers.path} (item_id,label), then "
                 "run the same command again")


def batch_counts(rows: list[dict[str, Any]]) -> list[str]:
    """``["10 selected", "2 label suspects", "3 still open"]``, leaving out what the batch lacks."""
    counts = Counter(row["reason"] for row in rows)
    said = {SELECTED: SELECTED, SUSPECT: "label suspects", STILL_OPEN: STILL_OPEN}
    return [f"{counts[reason]} {said[reason] if counts[reason] != 1 else reason}" for reason in said if counts[reason]]

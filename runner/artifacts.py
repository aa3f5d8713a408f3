"""Files of a run directory, all derived from the run store and all written atomically.

Because every file is rebuilt from the store, a resumed run ends with exactly the files an uninterrupted one has.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from plugins.files import atomic_write, atomic_write_text
from runner.store import Store


def selection_csv_path(run_dir: Path, round_: int) -> Path:
    return run_dir / "selected" / f"round_{round_:03d}.csv"


def write_selection_csv(store: Store, run_dir: Path, round_: int) -> None:
    _write_ranked_csv(store.selection(round_), selection_csv_path(run_dir, round_))


def write_relabel_csv(store: Store, run_dir: Path, round_: int) -> None:
    """``relabel/round_NNN.csv``: the suspects a round sent back for another look (``item_id,score,rank``)."""
    _write_ranked_csv(store.relabel_rows(round_), run_dir / "relabel" / f"round_{round_:03d}.csv")


def _write_ranked_csv(rows: Iterable[tuple[str, float, int]], path: Path) -> None:
    """``item_id,score,rank`` rows, scores written exactly (repr), atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["item_id", "score", "rank"])
    for item_id, score, rank in rows:
        writer.writerow([item_id, repr(float(score)), rank])
    atomic_write_text(path, buffer.getvalue())


def write_label_issues_csv(store: Store, run_dir: Path, class_names: list[str]) -> None:
    """``label_issues.csv``: every round's flagged labels, most suspect first within a round
    (``item_id,given_label,suggested_label,score,round``; labels by class name)."""
    ids = store.item_ids()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["item_id", "given_label", "suggested_label", "score", "round"])
    for round_, idx, given, suggested, score in store.label_issues():
        writer.writerow([ids[idx], class_names[given], class_names[suggested], repr(float(score)), round_])
    atomic_write_text(run_dir / "label_issues.csv", buffer.getvalue())


def metrics_rows(store: Store) -> list[dict[str, Any]]:
    """One dict per evaluated round: the evaluation figures plus the seconds of each finished stage."""
    rows = []
    for row in store.rounds():
        seconds = store.stage_seconds(row["round"])
        row = {**row, "seconds": {k: round(v, 4) for k, v in seconds.items()}}
        rows.append(row)
    return rows


def write_metrics_jsonl(store: Store, run_dir: Path) -> list[dict[str, Any]]:
    rows = metrics_rows(store)
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return rows


def write_learning_curve(rows: list[dict[str, Any]], path: Path, title: str, target: float | None) -> None:
    from runner import figures

    points = [(r["n_labeled"], r["test_accuracy"]) for r in rows if r["test_accuracy"] is not None]
    write_bytes(path, figures.learning_curve(points, title, target))


def write_bytes(path: Path, content: bytes) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_bytes(content)

    atomic_write(path, write)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_item_metrics(store: Store, run_dir: Path, names: list[str]) -> None:
    """``item_metrics.csv``: ``item_id`` and one column per metric (empty where it could not be computed)."""
    columns = [store.get_array(f"metrics/{name}") for name in names]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["item_id", *names])
    for i, item_id in enumerate(store.item_ids()):
        writer.writerow([item_id, *("" if c is None or c[i] != c[i] else repr(float(c[i])) for c in columns)])
    atomic_write_text(run_dir / "item_metrics.csv", buffer.getvalue())


def write_tags_csv(store: Store, run_dir: Path) -> dict[str, int]:
    """``tags.csv`` (``item_id,tag,round``) from the store; returns how many items carry each tag."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["item_id", "tag", "round"])
    counts: dict[str, int] = {}
    for item_id, tag, round_ in store.tag_rows():
        writer.writerow([item_id, tag, round_])
        counts[tag] = counts.get(tag, 0) + 1
    atomic_write_text(run_dir / "tags.csv", buffer.getvalue())
    return dict(sorted(counts.items()))


def write_skipped_files(run_dir: Path, skipped: Iterable[tuple[str, str]]) -> None:
    """``skipped_files.csv`` (``file,reason``): each input the source could not use. None skipped: no file (one
    left by an earlier invocation, whose files have since been fixed, goes)."""
    rows = list(skipped)
    path = run_dir / "skipped_files.csv"
    if not rows:
        path.unlink(missing_ok=True)
        return
    _write_rows(path, ["file", "reason"], rows)


def to_label_path(run_dir: Path, round_: int, suffix: str) -> Path:
    """``to_label/round_NNN.csv`` (``suffix`` ``.csv``) or ``.html``: a file loop round's batch."""
    return run_dir / "to_label" / f"round_{round_:03d}{suffix}"


TO_LABEL_COLUMNS = ("rank", "item_id", "path", "score", "suggested_label", "suggested_probability", "reason",
                    "given_label", "asked_in")


def write_to_label_csv(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """A file loop round's batch, one row per item in the order to label them (see ``TO_LABEL_COLUMNS``); scores
    and probabilities written exactly (repr), a missing value as an empty field."""

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        return repr(float(value)) if isinstance(value, float) else value

    _write_rows(path, list(TO_LABEL_COLUMNS), ([cell(row[c]) for c in TO_LABEL_COLUMNS] for row in rows))


def write_rejected_answers(path: Path, rows: Iterable[tuple[int, str, str, str]]) -> None:
    """The answers a labels file gave that were not used (``line,item_id,label,reason``); none: no file."""
    found = list(rows)
    if not found:
        path.unlink(missing_ok=True)
        return
    _write_rows(path, ["line", "item_id", "label", "reason"], found)


def _write_rows(path: Path, header: list[str], rows: Iterable[Iterable[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())

"""``report.html``: one self-contained page per run, and per sweep (``runner.sweep_report``).

The run page shows what each round chose, as people judge a round: the selected batch as thumbnails in rank order
with score, label and metric values; the items the filters removed, with why; where the selected items fall in
each metric's distribution over the pool; label issues where the run found any (``label_issues.csv``); the
learning curve, the time per stage, the configuration and the environment. Everything is embedded (figures and
thumbnails as PNG data URIs, no script or style from elsewhere), so the file opens from disk anywhere.

The page is built from the store and the run's files only, without timestamps, so the same store gives the same
bytes (a resumed run ends with the same report as an uninterrupted one, save the seconds each stage took). Pages
are rendered by Jinja2 with autoescaping on: no value reaches the page unescaped.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from plugins.files import atomic_write_text
from runner import __version__, environment
from runner.formatting import format_stat

if TYPE_CHECKING:
    from plugins.sources.dataset import Dataset
    from runner.acquire import Acquisition
    from runner.quality import Metric
    from runner.settings import ReportSettings, SelectionSettings
    from runner.store import Store

TEMPLATES = Path(__file__).with_name("templates")
LABEL_ISSUES = "label_issues.csv"
# What the value a filter judged is called under a removed item (a metric filter's is the metric's name).
JUDGED = {"tags": "tags", "stages": "stage", "classes": "predicted"}
NO_PICTURE = "no picture (a vector)"


class RunParts(Protocol):
    """What the run page reads of a run's parts (``runner.assemble.Parts``). Named by what it offers rather than
    imported, so that a labeller built at assembly (the file loop's batch page) can use this module."""

    @property
    def project_name(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def data(self) -> Dataset: ...
    @property
    def metrics(self) -> list[Metric]: ...
    @property
    def acquisition(self) -> Acquisition: ...
    @property
    def filters(self) -> Any: ...
    @property
    def selection(self) -> SelectionSettings: ...
    @property
    def report(self) -> ReportSettings: ...


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config's ``report`` section; a config recorded before the section existed gets the declared defaults."""
    from runner.settings import ReportSettings, section

    return dataclasses.asdict(section(ReportSettings, config.get("report")))


def render(template: str, **context: Any) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["num"] = number
    env.filters["stat"] = format_stat
    return env.get_template(template).render(**context)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(png: bytes) -> dict[str, Any]:
    """A figure for the page: its data URI and its width in CSS pixels (96 per inch), so that text in every
    figure shows at the size it was drawn."""
    from runner.figures import DPI

    pixels = struct.unpack(">I", png[16:20])[0]  # the IHDR chunk's width, right after the PNG signature
    return {"uri": data_uri(png), "width": round(pixels * 96 / DPI)}


def number(value: Any, digits: int = 4) -> str:
    """A figure for the page: ``digits`` significant digits, n/a for a missing or non-finite value."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return f"{float(value):.{digits}g}"


def thumbnail(image: np.ndarray, max_px: int) -> tuple[str, int]:
    """A PNG data URI of one item's image (uint8, or float in [0, 1]), its longest side at most ``max_px``; and
    that side."""
    from PIL import Image

    if np.asarray(image).dtype == np.uint8:
        pixels = np.asarray(image)
    else:
        pixels = np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    picture = Image.fromarray(pixels)
    if max(picture.size) > max_px:
        picture.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return data_uri(buffer.getvalue()), max(picture.size)


def item_thumbnail(data: Dataset, idx: int, max_px: int) -> tuple[str, int] | None:
    """Item ``idx``'s thumbnail and its longest side, or None where the item has no picture.

    A vector is not an image: items of an embeddings source show the file their ``thumbnail`` column names, or
    nothing. Images show the original where the source keeps it (a photo, not the letterboxed pixels the model
    is given), else the model's own input.
    """
    if data.kind == "embeddings":
        return _thumbnail_file(data.extra.get("thumbnail"), idx, max_px)
    if data.original is not None:
        try:
            return thumbnail(data.original(idx), max_px)
        except (OSError, ValueError):  # a file gone or changed since the run read it: the model's input stands in
            pass
    return thumbnail(data.images[idx], max_px)


def _thumbnail_file(paths: Any, idx: int, max_px: int) -> tuple[str, int] | None:
    from PIL import Image, ImageOps

    path = "" if paths is None else str(paths[idx] or "")
    if not path:
        return None
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            pixels = np.asarray(image.convert("L" if image.mode in ("1", "L", "LA") else "RGB"), dtype=np.uint8)
    except (OSError, ValueError):
        return None
    return thumbnail(pixels, max_px)


# --- the run page ---------------------------------------------------------------------------------------------
def write_run_report(store: Store, run_dir: Path, parts: RunParts, summary: dict[str, Any],
                     rows: list[dict[str, Any]]) -> None:
    """Write ``report.html`` into ``run_dir`` (unless ``report.write`` is false)."""
    caps = dataclasses.asdict(parts.report)
    if caps["write"]:
        atomic_write_text(run_dir / "report.html", render("run_report.html.j2", **RunPage(
            store, run_dir, parts, caps).context(summary, rows)))


class RunPage:
    """What the run page shows, read from the store, the run's files and the items' images."""

    def __init__(self, store: Store, run_dir: Path, parts: RunParts, caps: dict[str, Any]) -> None:
        self.store, self.run_dir, self.parts, self.caps = store, run_dir, parts, caps
        self.item_ids = store.item_ids()
        idx, labels = store.labeled()
        self.labels = dict(zip(idx.tolist(), labels.tolist(), strict=True))
        self.class_names = [str(c) for c in parts.data.class_names]
        self.metric_names = [m.name for m in parts.metrics]
        self.metrics = {name: store.get_array(f"metrics/{name}") for name in self.metric_names}
        self._thumbnails: dict[int, tuple[str, int] | None] = {}

    def context(self, summary: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        from runner import figures

        parts = self.parts
        selecting = [r["round"] for r in rows if len(self.store.selected_indices(r["round"]))]
        shown = selecting[-self.caps["rounds_with_items"]:] if self.caps["rounds_with_items"] else []
        curve = self.run_dir / "learning_curve.png"
        issues = self.label_issues()
        return {
            "title": f"{parts.project_name} · {parts.acquisition.name} · seed {parts.seed}",
            "run_name": self.run_dir.name,
            "version": __version__,
            "summary": summary,
            "cards": self.cards(summary),
            "curve": figure(curve.read_bytes()) if curve.is_file() else None,
            "stages": figure(figures.stage_times(rows)) if rows else None,
            "encoder_loss": self.encoder_loss(),
            "table": [self.round_row(row, previous) for row, previous in zip(rows, [None, *rows[:-1]], strict=True)],
            "rounds": [self.round_items(r, rows) for r in reversed(shown)],
            "rounds_hidden": len(selecting) - len(shown),
            "sort_keys": ["score", *self.metric_names],
            "in_use": self.metrics_in_use(),
            "batch_strategy": parts.acquisition.is_batch,
            "distributions": self.distributions(selecting),
            "label_issues": issues,
            "config": self.file_text("config.resolved.yaml"),
            "environment": flat_rows(summary.get("environment") or environment.describe()),
            "caps": self.caps,
        }

    # --- pieces ---
    def encoder_loss(self) -> dict[str, Any] | None:
        """The embedder's training loss per epoch, where it trained one (embedder=self_supervised)."""
        from runner import figures

        losses = self.store.get_array("embeddings/loss_curve")
        if losses is None or not len(losses):
            return None
        return figure(figures.training_loss(np.asarray(losses), "embedder training loss (no labels used)"))

    def cards(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        target = summary.get("target_accuracy")
        reached = summary.get("labels_to_target")
        return [
            ("labelled", number(summary.get("n_labeled"))),
            ("final test accuracy", number(summary.get("final_test_accuracy"))),
            ("best test accuracy", number(summary.get("best_test_accuracy"))),
            (f"labels to {target:g}" if target is not None else "labels to target",
             number(reached) if target is not None and reached is not None
             else ("not reached" if target is not None else "no target set")),
            ("rounds evaluated", number(summary.get("rounds_evaluated"))),
            ("stopped by", str(summary.get("stopped", "n/a")).replace("_", " ")),
            ("stage time", f"{summary.get('stage_seconds_total', 0.0):.1f} s"),
        ]

    def metrics_in_use(self) -> list[str]:
        """The metrics that decide what is selected: a filter's ranges, a weighted acquisition, the cost."""
        parts = self.parts
        used = [*parts.filters.metric_names, *parts.acquisition.metric_names, parts.selection.cost]
        return [name for name in self.metric_names if name in used]

    def screened(self, round_: int) -> dict[str, Any] | None:
        from runner.stages import screening_blob

        blob = self.store.get_blob(screening_blob(round_))
        return None if blob is None else json.loads(blob)

    def round_row(self, row: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
        screened = self.screened(row["round"]) or {}
        accuracy, before = row["test_accuracy"], None if previous is None else previous["test_accuracy"]
        return {
            "round": row["round"],
            "labelled": row["n_labeled"],
            "accuracy": accuracy,
            "change": None if accuracy is None or before is None else accuracy - before,
            "unlabelled": screened.get("unlabelled"),
            "removed": None if not screened else screened["unlabelled"] - screened["passed"],
            "scored": screened.get("scored"),
            "selected": len(self.store.selected_indices(row["round"])),
            "seconds": sum(row["seconds"].values()),
        }

    def tile(self, idx: int, **facts: Any) -> dict[str, Any]:
        if idx not in self._thumbnails:
            self._thumbnails[idx] = item_thumbnail(self.parts.data, idx, self.caps["thumbnail_px"])
        found = self._thumbnails[idx]
        uri, side = found if found is not None else (None, 0)
        label = self.labels.get(idx)
        values = {name: self.metric(name, idx) for name in self.metric_names}
        return {"img": uri, "small": side < 48, "item_id": self.item_ids[idx], "missing": NO_PICTURE,
                "label": None if label is None else self.class_names[label], "metrics": values, **facts}

    def metric(self, name: str, idx: int) -> float | None:
        column = self.metrics[name]
        if column is None or idx >= len(column) or not np.isfinite(column[idx]):
            return None
        return float(column[idx])

    def round_items(self, round_: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
        row = next(r for r in rows if r["round"] == round_)
        selection = self.store.selection(round_)
        indices = self.store.selected_indices(round_)
        cap = self.caps["selected_per_round"]
        tiles = [self.tile(int(i), rank=rank, score=score)
                 for i, (_, score, rank) in zip(indices[:cap], selection[:cap], strict=True)]
        screened = self.screened(round_)
        removed = []
        for entry in (screened or {}).get("filters", []):
            values = entry["values"] or [None] * len(entry["items"])
            judged_as = JUDGED.get(entry["filter"], entry["filter"].removeprefix("metrics."))
            removed.append({
                "filter": entry["filter"], "reason": entry["reason"], "count": entry["count"],
                "tiles": [self.tile(i, judged=v, judged_as=judged_as)
                          for i, v in zip(entry["items"], values, strict=True)],
            })
        return {"round": round_, "labelled": row["n_labeled"], "accuracy": row["test_accuracy"],
                "selected": len(indices), "tiles": tiles, "screened": screened, "removed": removed}

    def distributions(self, selecting: list[int]) -> dict[str, Any] | None:
        from runner import figures

        columns = {name: column for name, column in self.metrics.items() if column is not None}
        if not columns:
            return None
        pool = self.store.split_indices("pool")
        n = min(len(c) for c in columns.values())
        chosen = [self.store.selected_indices(r) for r in selecting]
        selected = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
        ranges = dict(self.parts.filters.metric_ranges)
        return figure(figures.metric_distributions(columns, pool[pool < n], selected[selected < n], ranges))

    def label_issues(self) -> list[dict[str, Any]] | None:
        """Suspected label errors from ``label_issues.csv`` (item_id, given_label, suggested_label, score, round),
        per round, newest first, in the file's order; None when the run has no such file."""
        path = self.run_dir / LABEL_ISSUES
        if not path.is_file():
            return None
        with open(path, newline="", encoding="utf-8") as handle:
            found = list(csv.DictReader(handle))
        index = {item: i for i, item in enumerate(self.item_ids)}
        by_round: dict[str, list[dict[str, Any]]] = {}
        for entry in found:
            by_round.setdefault(str(entry.get("round", "")), []).append(entry)
        rounds = []
        for round_, entries in sorted(by_round.items(), key=lambda kv: _round_key(kv[0]), reverse=True):
            tiles = []
            for entry in entries[:self.caps["label_issues_per_round"]]:
                idx = index.get(str(entry.get("item_id")))
                facts = {"given": entry.get("given_label"), "suggested": entry.get("suggested_label"),
                         "issue_score": _float(entry.get("score"))}
                tiles.append(self.tile(idx, **facts) if idx is not None else
                             {"img": None, "item_id": entry.get("item_id"), "label": None, "metrics": {}, **facts})
            rounds.append({"round": round_, "count": len(entries), "tiles": tiles})
        return rounds

    def file_text(self, name: str) -> str | None:
        path = self.run_dir / name
        return path.read_text(encoding="utf-8") if path.is_file() else None


def _round_key(text: str) -> tuple[int, str]:
    try:
        return int(text), text
    except ValueError:
        return -(10**9), text


def _float(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def flat_rows(node: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested mappings as ``(dotted key, value)`` rows in key order; lists of mappings numbered."""
    if isinstance(node, dict):
        rows: list[tuple[str, str]] = []
        for key in sorted(node, key=str):
            rows += flat_rows(node[key], f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        return [row for i, value in enumerate(node) for row in flat_rows(value, f"{prefix}[{i}]")]
    return [(prefix, node if isinstance(node, str) else json.dumps(node, sort_keys=True))]


# --- the sweep page -------------------------------------------------------------------------------------------
def sweep_page(report: dict[str, Any], source: str, names: list[str], figures: Sequence[tuple[str, str, bytes]],
               links: dict[str, str]) -> str:
    """The sweep's page: ``names`` the configurations' readable names, ``figures`` as ``(title, caption, png)``,
    ``links`` from a run's path to its own report."""
    rows = [{**row, "name": name} for row, name in zip(report["configurations"], names, strict=True)]
    return render("sweep_report.html.j2", report=report, rows=rows, source=source, version=__version__, links=links,
                  figures=[(title, caption, figure(png)) for title, caption, png in figures])


# --- the file loop's batch page ------------------------------------------------------------------------------
def batch_page(project: str, round_: int, rows: list[dict[str, Any]], counts: list[str], csv_name: str,
               labels_file: str, classes: list[str]) -> str:
    """``to_label/round_NNN.html``: the rows of the round's file as thumbnails (``img``, ``small`` beside the
    file's columns), in file order, with what to do with them."""
    return render("to_label.html.j2", project=project, round=round_, rows=rows, counts=counts, csv_name=csv_name,
                  labels_file=labels_file, classes=classes, version=__version__, missing=NO_PICTURE,
                  has_suspects=any(r.get("given_label") for r in rows))

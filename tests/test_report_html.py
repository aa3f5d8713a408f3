"""report.html of a run: what the filters removed (recorded in the store), the selected batches as thumbnails in rank
order, the caps, label issues, escaping, and the same bytes from the same store. The page is read with the
standard library's HTML parser; tests/test_report_browser.py opens it in a real browser."""

from __future__ import annotations

import csv
import json
import sqlite3
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from plugins.filters.candidates import CandidateFilter
from runner import html_report, stages
from tests.conftest import compose_config, run_in_process

# Digits: brightness (mean intensity) of the pool lies within about [0.12, 0.45]; [0.2, 0.35] removes some.
RUN = ("+experiment=digits", "loop.rounds=2", "selection.budget=7", "metrics=quality", "filters=quality",
       "filters.metrics.brightness=[0.2,0.35]", "filters.exclude_near_duplicates=false")


class Page(HTMLParser):
    """The parts of the page the tests read: tiles (with their grid and round), images, scripts, links."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tiles: list[dict] = []
        self.images: list[str] = []
        self.sources: list[str] = []
        self.rounds: list[int] = []
        self._grid: str | None = None
        self._round: int | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if tag == "details" and "round" in classes:
            self._round = int(str(found["id"]).removeprefix("round-"))
            self.rounds.append(self._round)
        if tag == "div" and "grid" in classes:
            self._grid = "selected" if "sortable" in classes else "removed"
        if tag == "div" and "tile" in classes:
            self.tiles.append({"grid": self._grid, "round": self._round, **found})
        if tag == "img":
            self.images.append(str(found["src"]))
        for key in ("src", "href"):
            if found.get(key):
                self.sources.append(str(found[key]))


def selected_tiles(page: Page, round_: int) -> list[dict]:
    return [t for t in page.tiles if t["grid"] == "selected" and t["round"] == round_]


def selection_ids(run_dir: Path, round_: int) -> list[str]:
    with open(run_dir / "selected" / f"round_{round_:03d}.csv", newline="") as handle:
        return [row["item_id"] for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("report") / "run"
    run_in_process(run_dir, *RUN)
    return run_dir


def test_removals_are_counted_and_explained_per_round(run: Path) -> None:
    with sqlite3.connect(run / "state.sqlite") as db:
        items = [r[0] for r in db.execute("SELECT item_id FROM items ORDER BY idx")]
        split = [r[0] for r in db.execute("SELECT split FROM items ORDER BY idx")]
        labelled_by = dict(db.execute("SELECT idx, round FROM labels"))
        record = json.loads(db.execute("SELECT data FROM blobs WHERE name = 'screened/001'").fetchone()[0])
    with open(run / "item_metrics.csv", newline="") as handle:
        brightness = {row["item_id"]: float(row["brightness"]) for row in csv.DictReader(handle)}
    # Independently: the pool items unlabelled before round 1 acted, and those outside [0.2, 0.35].
    unlabelled = [i for i in range(len(items)) if split[i] == "pool" and labelled_by.get(i, 99) >= 1]
    outside = [i for i in unlabelled if not 0.2 <= brightness[items[i]] <= 0.35]
    assert 0 < len(outside) < len(unlabelled)
    assert record["unlabelled"] == len(unlabelled)
    assert record["passed"] == record["scored"] == len(unlabelled) - len(outside)
    [entry] = record["filters"]
    assert entry["filter"] == "metrics.brightness" and entry["reason"] == "brightness outside [0.2, 0.35]"
    assert entry["count"] == len(outside)
    assert len(entry["items"]) == min(12, len(outside))  # report.removed_per_filter
    assert set(entry["items"]) <= set(outside)
    assert entry["values"] == pytest.approx([brightness[items[i]] for i in entry["items"]], abs=1e-12)


def test_each_round_shows_its_batch_in_rank_order(run: Path) -> None:
    page = Page((run / "report.html").read_text(encoding="utf-8"))
    assert page.rounds == [1, 0]  # newest first; round 2 only trained and evaluated
    for round_ in (0, 1):
        tiles = selected_tiles(page, round_)
        # The tooltip starts with the item id; the order is the selection file's.
        assert [t["title"].split("\n")[0] for t in tiles] == selection_ids(run, round_)
        assert [int(t["data-rank"]) for t in tiles] == list(range(1, 8))
        scores = [float(t["data-score"]) for t in tiles]
        assert scores == sorted(scores, reverse=True)
        assert all(0.2 <= float(t["data-brightness"]) <= 0.35 for t in tiles)  # the filter kept them out
    removed = [t for t in page.tiles if t["grid"] == "removed"]
    assert removed and all("brightness" in t["title"] for t in removed)


def test_page_is_self_contained_and_small(run: Path) -> None:
    text = (run / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert all(s.startswith(("data:", "#")) for s in page.sources)
    assert "<link" not in text and "@import" not in text
    # 14 selected and 24 removed thumbnails of 8 x 8 pixels, and three figures: well under half a megabyte.
    assert len(text.encode()) < 500_000


@pytest.mark.slow
def test_same_store_gives_the_same_bytes(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"  # the page names its run directory
    copy.mkdir()
    for name in ("state.sqlite", "config.resolved.yaml", "summary.json", "learning_curve.png"):
        (copy / name).write_bytes((run / name).read_bytes())
    before = (run / "report.html").read_bytes()
    run_in_process(copy, *RUN)  # a finished store: the run only writes its files again
    assert (copy / "report.html").read_bytes() == before


def test_caps_and_switching_the_page_off(tmp_path: Path) -> None:
    capped = tmp_path / "capped"
    run_in_process(capped, *RUN, "report.selected_per_round=3", "report.rounds_with_items=1",
                   "report.removed_per_filter=2")
    page = Page((capped / "report.html").read_text(encoding="utf-8"))
    assert page.rounds == [1]
    assert [t["title"].split("\n")[0] for t in selected_tiles(page, 1)] == selection_ids(capped, 1)[:3]
    assert len([t for t in page.tiles if t["grid"] == "removed"]) == 2
    off = tmp_path / "off"
    run_in_process(off, "+experiment=digits", "loop.rounds=1", "report.write=false")
    assert (off / "summary.json").is_file() and not (off / "report.html").exists()


def test_label_issues_are_shown_escaped(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "issues"
    copy.mkdir()
    for name in ("state.sqlite", "config.resolved.yaml", "summary.json", "learning_curve.png"):
        (copy / name).write_bytes((run / name).read_bytes())
    item = selection_ids(run, 0)[0]
    (copy / "label_issues.csv").write_text(
        "item_id,given_label,suggested_label,score,round\n"
        f"{item},<b>3</b>,8,0.02,1\n"
        "not-an-item,1,7,0.5,1\n"
        f"{item},3,8,0.1,0\n"
    )
    run_in_process(copy, *RUN)
    text = (copy / "report.html").read_text(encoding="utf-8")
    assert "&lt;b&gt;3&lt;/b&gt;" in text and "<b>3</b>" not in text
    section = text[text.index('id="label-issues"'):text.index('id="configuration"')]
    assert section.index("Round 1: 2 suspects") < section.index("Round 0: 1 suspect")
    assert "image not in this run" in section  # an id the run does not know still gets its row
    assert section.count("<img") == 2


def test_screen_says_which_filter_removed_what() -> None:
    inputs = SimpleNamespace(
        labeled=np.array([0]), class_names=["cat", "dog"],
        metric=lambda name: np.array([0.5, 0.1, 0.5, np.nan, 0.9, 0.5]),
        tags=lambda: {2: {"parked"}, 4: {"parked"}},
        item_column=lambda name: np.array(["a"] * 6), probs=lambda idx: None, embeddings=lambda idx: None,
    )
    screen = CandidateFilter({"brightness": [0.2, 0.8]}, {"exclude": ["parked"]}, None, None, False, 0.03)
    candidates = np.array([1, 2, 3, 4, 5])
    kept, removals = screen.screen(candidates, inputs)
    assert kept.tolist() == [5] == screen.apply(candidates, inputs).tolist()
    by_filter = {r.filter: r for r in removals}
    assert by_filter["metrics.brightness"].items.tolist() == [1, 3, 4]  # 0.1 and 0.9 outside, NaN never passes
    assert by_filter["metrics.brightness"].values == [0.1, None, 0.9]
    assert by_filter["metrics.brightness"].reason == "brightness outside [0.2, 0.8]"
    assert by_filter["tags"].items.tolist() == [2, 4] and by_filter["tags"].values == ["parked", "parked"]
    assert by_filter["tags"].reason == "tagged parked"
    # Nothing removed by a filter: no entry; an inactive filter removes nothing and records nothing.
    assert CandidateFilter({}, {}, None, None, False, 0.03).screen(candidates, inputs) == (candidates, [])


def test_screening_record_keeps_an_even_sample_and_the_whole_count() -> None:
    removal = SimpleNamespace(filter="tags", reason="tagged parked", items=np.arange(100, 200), values=list(range(100)))
    record = stages.screening_record(500, 400, 300, [removal], examples=5)
    [entry] = record["filters"]
    assert (record["unlabelled"], record["passed"], record["scored"]) == (500, 400, 300)
    assert entry["count"] == 100
    # Positions round(linspace(0, 99, 5)) = 0, 25, 50, 74, 99 (numpy rounds 49.5 and 74.25 to even / nearest).
    assert entry["items"] == [100, 125, 150, 174, 199] and entry["values"] == [0, 25, 50, 74, 99]
    assert stages.screening_record(3, 3, 3, [], examples=5)["filters"] == []


def test_a_config_recorded_without_report_section_gets_the_yaml_defaults() -> None:
    config = compose_config("+experiment=digits")
    assert html_report.settings(config) == config["report"]
    del config["report"]
    assert html_report.settings(config) == compose_config("+experiment=digits")["report"]


@pytest.mark.slow
def test_a_human_round_shows_its_plan_before_it_is_applied(tmp_path: Path) -> None:
    from tests.encord_fake import example_export
    from tests.test_encord_cycle import invoke

    run_dir = tmp_path / "project"
    summary = invoke(run_dir, example_export(tmp_path, n=40, labelled=12), "act.apply=false")
    assert summary["stopped"] == "dry_run" and summary["mode"] == "human"
    assert json.loads((run_dir / "summary.json").read_text())["open_round"] == 0
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    plan = json.loads((run_dir / "actions" / "round_000.json").read_text())
    ranked = list(dict.fromkeys(r["data_hash"] for r in sorted(
        (r for r in plan["records"] if r["rank"] is not None), key=lambda r: r["rank"])))
    assert [t["title"].split("\n")[0] for t in selected_tiles(page, 0)] == ranked
    assert "human mode" in text and text.count("not labelled yet") == len(ranked)

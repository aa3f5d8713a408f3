"""End-to-end runs on scikit-learn's digits: artefacts, determinism, resume, refusal; through the real CLI where
the command line is the point, in this process otherwise."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from runner.errors import ConfigError
from tests.conftest import run_cli, run_in_process

DIGITS = ("+experiment=digits", "loop.rounds=2", "selection.budget=7")
CNN = ("model=cnn", "model.epochs=2", "model.min_steps=10", "model.batch_size=16")


def run_ok(run_dir: Path, *overrides: str) -> str:
    result = run_cli(*DIGITS, f"hydra.run.dir={run_dir}", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def run_here(run_dir: Path, *overrides: str) -> dict:
    return run_in_process(run_dir, *DIGITS, *overrides)


def selections(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "selected").glob("round_*.csv"))}


def accuracies(run_dir: Path) -> list[tuple[int, int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["round"], r["n_labeled"], r["test_accuracy"]) for r in rows]


def test_two_round_run_leaves_every_artefact(tmp_path):
    run_dir = tmp_path / "run"
    stdout = run_ok(run_dir)
    for name in (".hydra/config.yaml", "config.resolved.yaml", "state.sqlite", "metrics.jsonl",
                 "learning_curve.png", "summary.json", "selected/round_000.csv", "selected/round_001.csv"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "selected" / "round_002.csv").exists()  # the last round only trains and evaluates

    # one progress line per evaluated round
    progress = [line for line in stdout.splitlines() if line.startswith("round ")]
    assert len(progress) == 3 and "labelled" in progress[0] and "test accuracy" in progress[0]

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [r["n_labeled"] for r in rows] == [20, 27, 34]
    assert set(rows[0]["seconds"]) == {"train", "evaluate", "score", "select", "act"}
    assert set(rows[2]["seconds"]) == {"train", "evaluate"}
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows)

    with open(run_dir / "selected" / "round_000.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["item_id", "score", "rank"]
    assert [int(r["rank"]) for r in table] == list(range(1, 8))
    scores = [float(r["score"]) for r in table]
    assert scores == sorted(scores, reverse=True)

    # the store agrees with the files: selected items became labels of that round, nothing else did
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        labelled = dict(db.execute("SELECT items.item_id, labels.round FROM labels JOIN items USING (idx)"))
        truth = dict(db.execute("SELECT item_id, truth FROM items"))
        label_of = dict(db.execute("SELECT items.item_id, labels.label FROM labels JOIN items USING (idx)"))
        splits = dict(db.execute("SELECT split, COUNT(*) FROM items GROUP BY split"))
    assert splits == {"pool": 1500, "test": 297}
    assert sorted(i for i, r in labelled.items() if r == 0) == sorted(r["item_id"] for r in table)
    assert all(label_of[i] == truth[i] for i in label_of)  # the oracle revealed the truth

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_labeled"] == 34 and summary["rounds_evaluated"] == 3 and summary["stopped"] == "rounds"
    assert summary["final_test_accuracy"] == rows[-1]["test_accuracy"]
    resolved = (run_dir / "config.resolved.yaml").read_text()
    assert "${" not in resolved and "budget: 7" in resolved
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_initial_labels_are_class_balanced(tmp_path):
    run_dir = tmp_path / "run"
    run_here(run_dir, "loop.initial_labels=30", "loop.rounds=1")
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        counts = [n for _, n in db.execute("SELECT label, COUNT(*) FROM labels WHERE round = -1 GROUP BY label")]
    assert counts == [3] * 10


def test_target_accuracy_stops_early(tmp_path):
    run_dir = tmp_path / "run"
    run_here(run_dir, "loop.rounds=20", "loop.target_accuracy=0.5")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped"] == "target_accuracy"
    rows = accuracies(run_dir)
    assert rows[-1][2] >= 0.5 and all(acc < 0.5 for _, _, acc in rows[:-1])
    assert summary["labels_to_target"] == rows[-1][1]


@pytest.mark.parametrize("overrides", [(), ("acquisition=random",),
                                       pytest.param(CNN + ("acquisition=bald",), marks=pytest.mark.slow)],
                         ids=["logreg-default", "logreg-random", "cnn-bald"])
def test_same_config_and_seed_give_identical_selections(tmp_path, overrides):
    run_here(tmp_path / "a", *overrides)
    run_here(tmp_path / "b", *overrides)
    assert selections(tmp_path / "a") == selections(tmp_path / "b")
    assert accuracies(tmp_path / "a") == accuracies(tmp_path / "b")


def test_another_seed_gives_other_selections(tmp_path):
    run_here(tmp_path / "a", "acquisition=random")
    run_here(tmp_path / "b", "acquisition=random", "seed=1")
    assert selections(tmp_path / "a") != selections(tmp_path / "b")


@pytest.mark.slow
def test_rerun_of_a_finished_run_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    run_here(run_dir)
    before = {p: p.read_bytes() for p in (run_dir / "selected").iterdir()}
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    stages = (run_dir / "state.sqlite").stat().st_mtime_ns
    assert "already finished; skipping" in run_ok(run_dir)  # the command line answers from the record
    assert {p: p.read_bytes() for p in (run_dir / "selected").iterdir()} == before
    assert (run_dir / "metrics.jsonl").read_bytes() == metrics  # seconds come from the store, not from this call
    assert (run_dir / "state.sqlite").stat().st_mtime_ns == stages


def test_different_config_in_existing_run_dir_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_here(run_dir)
    with pytest.raises(ConfigError, match=r"holds a run with a different config \(changed: selection.budget\)"):
        run_here(run_dir, "selection.budget=8")


# A driver that runs the real CLI but SIGKILLs itself at a chosen stage, either right after that stage's
# transaction committed ("after") or inside the transaction, before the commit ("inside").
KILLER = """
import os, runpy, signal, sys
from runner import session, store
mode, target = sys.argv[1], sys.argv[2]
sys.argv = ["runner"] + sys.argv[3:]
if mode == "after":
    original = session.Session.stage
    def stage(self, round_, name, work):
        original(self, round_, name, work)
        if f"{name}:{round_}" == target:
            os.kill(os.getpid(), signal.SIGKILL)
    session.Session.stage = stage
else:
    original = store.Store.mark_done
    def mark_done(self, round_, stage, seconds):
        original(self, round_, stage, seconds)
        if f"{stage}:{round_}" == target:
            os.kill(os.getpid(), signal.SIGKILL)
    store.Store.mark_done = mark_done
runpy.run_module("runner", run_name="__main__")
"""


# Every array in its own memory-mapped file (arrays/), and stages that write and delete such files.
MEMMAP = ("compute.memmap_min_bytes=0", "metrics=quality")


@pytest.mark.parametrize(
    ("mode", "target", "extra"),
    [
        pytest.param("after", "train:1", (), marks=pytest.mark.slow),
        pytest.param("after", "select:0", (), marks=pytest.mark.slow),
        pytest.param("inside", "act:1", (), marks=pytest.mark.slow),
        pytest.param("inside", "import:-1", (), marks=pytest.mark.slow),
        pytest.param("after", "evaluate:3", (), marks=pytest.mark.slow),
        pytest.param("inside", "score:1", MEMMAP, marks=pytest.mark.slow),
        pytest.param("inside", "act:0", MEMMAP, marks=pytest.mark.slow),
        pytest.param("inside", "metrics:-1", MEMMAP, marks=pytest.mark.slow),
    ],
)
def test_killed_run_resumes_to_the_same_files(tmp_path, mode, target, extra):
    overrides = ("loop.rounds=3", *extra)
    reference = tmp_path / "reference"
    run_here(reference, *overrides)

    run_dir = tmp_path / "killed"
    killed = run_cli(mode, target, *DIGITS, f"hydra.run.dir={run_dir}", *overrides, python_args=("-c", KILLER))
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run_cli(*DIGITS, f"hydra.run.dir={run_dir}", *overrides)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    assert selections(run_dir) == selections(reference)
    assert accuracies(run_dir) == accuracies(reference)
    # Measurements of the invocation, not results of the run.
    strip = lambda s: {k: v for k, v in s.items() if k not in ("stage_seconds_total", "resources")}  # noqa: E731
    assert strip(json.loads((run_dir / "summary.json").read_text())) == strip(
        json.loads((reference / "summary.json").read_text())
    )
    # The reference ran in this process, so it lacks Hydra's own files (.hydra/, runner.log).
    listing = lambda d: sorted(  # noqa: E731
        str(p.relative_to(d)) for p in d.rglob("*")
        if p.is_file() and "sqlite-" not in p.name and ".hydra" not in p.parts and p.name != "runner.log"
    )
    assert listing(run_dir) == listing(reference)
    assert not [p for p in run_dir.rglob("*.tmp")]
    if extra == MEMMAP:  # the arrays that outlive their round are files, and they are the same files
        files = sorted(p.name for p in (reference / "arrays").iterdir())
        assert "embeddings__static.npy" in files and "metrics__uniqueness.npy" in files
        assert not any(name.startswith(("scores__", "candidates__")) for name in files)  # dropped after act
        for name in files:
            assert np.array_equal(np.load(run_dir / "arrays" / name), np.load(reference / "arrays" / name),
                                  equal_nan=True), name
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        stages = db.execute("SELECT round, stage, COUNT(*) FROM stages GROUP BY round, stage HAVING COUNT(*) > 1")
        assert stages.fetchall() == []


def test_help_does_not_import_torch():
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['runner', '--help']\n"
        "try:\n    runpy.run_module('runner', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = run_cli(python_args=("-c", probe))
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert "acquisition" in result.stdout  # Hydra's help lists the config groups


def test_the_quick_help_is_the_page_hydra_shows():
    # Bare --help is printed without Hydra (which copies its whole repository per group to list the groups);
    # with an override Hydra renders the same page from the same hydra.help node.
    ours = run_cli("--help")
    hydras = run_cli("--help", "seed=0")
    assert ours.returncode == 0 and hydras.returncode == 0, hydras.stderr
    assert ours.stdout.strip() == hydras.stdout.strip()
    assert "loop.rounds=5" in ours.stdout and "selection: default" in ours.stdout

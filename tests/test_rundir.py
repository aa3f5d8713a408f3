"""The run directory: one run at a time, damaged stores refused in one line, refusals that leave nothing behind."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.errors import ConfigError
from runner.rundir import LOCK_FILE, RunDirBusy, exclusive
from runner.store import Store, StoreError
from tests.conftest import REPO, run_cli, run_in_process

DIGITS = ("+experiment=digits", "loop.rounds=1", "selection.budget=5")

# A process that takes the run directory's lock and holds it until it is killed.
HOLDER = """
import sys, time
from pathlib import Path
from runner.rundir import exclusive
with exclusive(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow
def test_a_second_run_in_the_same_directory_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusy) as caught, exclusive(tmp_path):
            pass
        message = str(caught.value)
        assert f"pid {holder.pid} on " in message and "\n" not in message and caught.value.exit_code == 2
        result = run_cli(*DIGITS, f"hydra.run.dir={tmp_path}")
        assert result.returncode == 2 and f"is in use by another run (pid {holder.pid}" in result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / "state.sqlite").exists()
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the lock with the killed holder: nothing stale is left to clear by hand.
    with exclusive(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_the_lock_is_released_when_the_block_ends(tmp_path):
    with exclusive(tmp_path):
        pass
    started = time.perf_counter()
    with exclusive(tmp_path):
        pass
    assert time.perf_counter() - started < 5


def finished_store(tmp_path: Path) -> Path:
    run_in_process(tmp_path, *DIGITS)
    return tmp_path / "state.sqlite"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:2048]), "damaged"),  # truncated mid-file
        (lambda path: path.write_bytes(b"not a database at all" * 100), "not a usable run store"),
        (lambda path: path.write_bytes(path.read_bytes()[:100] + b"\0" * 4000), "not a usable run store"),
    ],
    ids=["truncated", "overwritten", "header-only"],
)
def test_a_damaged_store_is_one_line_saying_how_to_start_over(tmp_path, damage, reason):
    path = finished_store(tmp_path)
    for extra in tmp_path.glob("state.sqlite-*"):  # a copy taken after the run ended has no write-ahead log
        extra.unlink()
    damage(path)
    with pytest.raises(StoreError) as caught:
        run_in_process(tmp_path, *DIGITS)
    message = str(caught.value)
    assert str(path) in message and "start the run over" in message and "\n" not in message
    assert caught.value.exit_code == 2


def test_another_sqlite_database_is_not_taken_for_a_store(tmp_path):
    path = tmp_path / "state.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE photos (name TEXT)")
    with pytest.raises(StoreError, match="is not a run store \\(no 'meta' table\\)"):
        Store(path)
    with sqlite3.connect(path) as db:  # and it was left as it was
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["photos"]


def test_a_store_killed_while_it_was_created_is_started_again(tmp_path):
    path = tmp_path / "state.sqlite"
    with sqlite3.connect(path) as db:  # a database file with SQLite's header and no table yet
        db.execute("PRAGMA journal_mode=WAL")
    assert path.stat().st_size > 0
    assert run_in_process(tmp_path, *DIGITS)["stopped"] == "rounds"


@pytest.mark.slow
def test_a_damaged_store_through_the_cli_is_exit_2_without_a_traceback(tmp_path):
    (tmp_path / "state.sqlite").write_bytes(b"\x00garbage" * 512)
    result = run_cli(*DIGITS, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2, result.stderr
    assert "is not a usable run store" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "mistake",
    [
        ("model.estimator.C=-1",),  # scikit-learn would only refuse it at fit
        ("acquisition=bald",),  # a strategy the model cannot serve
        ("metrics=quality", "selection.cost=nope"),  # an unknown cost column
        ("selection.budget=5000",),  # larger than the pool
    ],
)
def test_a_refused_config_leaves_the_directory_free_for_the_corrected_one(tmp_path, mistake):
    with pytest.raises(ConfigError):
        run_in_process(tmp_path, *DIGITS, *mistake)
    assert not (tmp_path / "state.sqlite").exists() and not (tmp_path / "config.resolved.yaml").exists()
    assert run_in_process(tmp_path, *DIGITS)["stopped"] == "rounds"

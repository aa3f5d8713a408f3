"""Replaying the committed digits record gives byte-identical selections."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner import replay

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "experiments" / "digits_entropy_vs_random"


def test_record_holds_only_small_replayable_files() -> None:
    jobs = replay.recorded_jobs(RECORD)
    assert len(jobs) == 4
    for job in jobs:
        names = {p.name for p in job.iterdir()}
        assert names == {"config.resolved.yaml", "metrics.jsonl", "summary.json", "selected"}
        assert len(list((job / "selected").glob("round_*.csv"))) == 3
    assert {"README.md", "report.md", "report.json", "learning_curves.png"} <= {p.name for p in RECORD.iterdir()}


@pytest.mark.slow
def test_replay_of_one_recorded_job_is_identical(tmp_path: Path) -> None:
    job = replay.recorded_jobs(RECORD)[0]
    record = tmp_path / "record"
    shutil.copytree(job, record / job.name)
    results = replay.replay(record, tmp_path / "out")
    assert results == {job.name: []}
    assert (tmp_path / "out" / job.name / "state.sqlite").exists()


def test_replay_notices_a_changed_selection(tmp_path: Path) -> None:
    job = replay.recorded_jobs(RECORD)[0]
    copy = tmp_path / "job"
    shutil.copytree(job, copy)
    assert replay.compare_job(job, copy) == []
    edited = copy / "selected" / "round_001.csv"
    edited.write_text(edited.read_text().replace(",1\n", ",0\n", 1))
    (copy / "selected" / "round_002.csv").unlink()
    assert replay.compare_job(job, copy) == ["round_001.csv differs", "round_002.csv missing from the replay"]


@pytest.mark.slow
def test_replay_command_on_the_whole_record(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "runner.replay", str(RECORD), "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 of 4 runs replayed with identical selections" in done.stdout


def test_replay_refuses_a_folder_without_records(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "runner.replay", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr

"""What the console says around a run: where its files are, why it stopped, how to resume it after Ctrl-C, the
help page's opening, and the one-line answers to a bare word, a missing extra and a cold start."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import run_in_process

DIGITS = ("+experiment=digits", "acquisition=random", "selection.budget=5")


def console(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "runner"]


def test_the_run_directory_and_the_report_are_named_at_the_start_and_the_end(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runner")
    run_in_process(tmp_path, *DIGITS, "loop.rounds=1")
    lines = console(caplog)
    report = tmp_path / "report.html"
    assert lines[0] == f"run: directory {tmp_path} | report {report} (written when the run ends)"
    assert lines[-1] == f"done: directory {tmp_path} | report {report}"
    assert report.is_file()
    assert any(line.startswith("round   0/1 |") for line in lines)  # the progress lines are still there


def test_no_report_is_named_when_none_is_written(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runner")
    run_in_process(tmp_path, *DIGITS, "loop.rounds=1", "report.write=false")
    lines = console(caplog)
    assert lines[0] == f"run: directory {tmp_path} | report none (report.write=false)"
    assert lines[-1] == f"done: directory {tmp_path} | report none (report.write=false)"
    assert not (tmp_path / "report.html").exists()


def test_an_exhausted_pool_is_said_on_the_console(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runner")
    # digits' pool is 1,500 items: 1,450 labelled at the start (145 a class) and 25 a round leave none after round 1.
    summary = run_in_process(tmp_path, *DIGITS, "loop.rounds=5", "loop.initial_labels=1450", "selection.budget=25")
    assert summary["stopped"] == "pool_exhausted"
    stops = [line for line in console(caplog) if "pool exhausted" in line or line.startswith("stopped")]
    assert stops == ["pool exhausted at round 2: no unlabelled candidate is left (after filters); nothing to select"]


def test_other_stops_name_their_round(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runner")
    run_in_process(tmp_path, *DIGITS, "loop.rounds=1")
    stops = [line for line in console(caplog) if line.startswith(("stopped", "pool exhausted"))]
    assert stops == ["stopped after round 1: every round of loop.rounds is done (raise loop.rounds to go on)"]

"""Replays: the comparison on hand-made selections (fast), then the committed digits record end to end (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner import replay
from runner.replay import DIFFERENT, IDENTICAL, NEAR_TIES, WITHIN_TOLERANCE, Row

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "experiments" / "digits_entropy_vs_random"
TOL = replay.SCORE_TOLERANCE


def rows(*pairs: tuple[str, float]) -> list[Row]:
    return [Row(item_id, score) for item_id, score in pairs]


# Two rounds of three picks, scores far apart (gaps of 0.1 and more).
RECORDED = {
    0: rows(("a", 0.9), ("b", 0.5), ("c", 0.4)),
    1: rows(("d", 0.8), ("e", 0.7), ("f", 0.1)),
}


def write_run(folder: Path, rounds: dict[int, list[Row]]) -> Path:
    (folder / "selected").mkdir(parents=True)
    for round_, picked in rounds.items():
        lines = ["item_id,score,rank"] + [f"{r.item_id},{r.score!r},{i}" for i, r in enumerate(picked, start=1)]
        (folder / "selected" / f"round_{round_:03d}.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_identical_files_are_identical(tmp_path: Path) -> None:
    verdict = replay.compare_job(write_run(tmp_path / "rec", RECORDED), write_run(tmp_path / "rep", RECORDED))
    assert verdict.kind == IDENTICAL


def test_last_digit_score_differences_are_within_tolerance(tmp_path: Path) -> None:
    shifted = {r: [Row(x.item_id, x.score + 3e-9) for x in picked] for r, picked in RECORDED.items()}
    verdict = replay.compare_job(write_run(tmp_path / "rec", RECORDED), write_run(tmp_path / "rep", shifted))
    assert verdict.kind == WITHIN_TOLERANCE
    assert verdict.largest_difference == pytest.approx(3e-9, rel=1e-3)


def test_same_items_with_scores_beyond_tolerance_are_different() -> None:
    replayed = {0: RECORDED[0], 1: rows(("d", 0.8), ("e", 0.7 + 10 * TOL), ("f", 0.1))}
    verdict = replay.compare_rounds(RECORDED, replayed)
    assert verdict.kind == DIFFERENT
    assert verdict.detail.startswith("1 round agrees, then round 1, rank 2: e scores")


def test_tolerance_is_relative_above_one() -> None:
    assert replay.within_tolerance(1000.0, 1000.0 + 500 * TOL)
    assert not replay.within_tolerance(1000.0, 1000.0 + 2000 * TOL)
    assert replay.within_tolerance(1e-5, 1e-5 + 0.5 * TOL) and not replay.within_tolerance(1e-5, 1e-5 + 2 * TOL)


def test_near_tied_pair_swapped_in_order_only_compares_the_later_rounds() -> None:
    # b and c are recorded 4e-7 apart: another machine may order them the other way round.
    recorded = {0: rows(("a", 0.9), ("b", 0.5), ("c", 0.4999996)), 1: RECORDED[1]}
    swapped = {0: rows(("a", 0.9), ("c", 0.5000001), ("b", 0.4999999)), 1: RECORDED[1]}
    verdict = replay.compare_rounds(recorded, swapped)
    assert verdict.kind == NEAR_TIES
    assert (verdict.divergence.round, verdict.divergence.rank) == (0, 2)
    assert verdict.divergence.recorded.item_id == "b" and verdict.divergence.replayed.item_id == "c"
    assert verdict.divergence.gap == pytest.approx(0.5 - 0.4999996)  # both scores as recorded
    assert "every round compared" in verdict.detail
    # The same swap followed by a real difference in a later round is not excused.
    broken = {0: swapped[0], 1: rows(("d", 0.8), ("x", 0.3), ("f", 0.1))}
    assert replay.compare_rounds(recorded, broken).kind == DIFFERENT


def test_near_tie_at_the_budget_edge_picks_another_item_and_stops_comparing() -> None:
    # c was the last pick; z, just below the budget in the record, scores 2e-7 higher on the replaying machine.
    replayed = {0: rows(("a", 0.9), ("b", 0.5), ("z", 0.4000002)), 1: rows(("q", 0.6), ("r", 0.2), ("s", 0.1))}
    verdict = replay.compare_rounds(RECORDED, replayed)
    assert verdict.kind == NEAR_TIES
    assert (verdict.divergence.round, verdict.divergence.rank) == (0, 3)
    assert verdict.divergence.gap == pytest.approx(2e-7, rel=1e-6)  # z is not in the record: its replayed score
    assert "later rounds not compared" in verdict.detail


def test_a_divergence_between_distant_scores_is_different() -> None:
    replayed = {0: rows(("a", 0.9), ("z", 0.45), ("b", 0.5)), 1: RECORDED[1]}
    verdict = replay.compare_rounds(RECORDED, replayed)
    assert verdict.kind == DIFFERENT
    assert verdict.divergence.rank == 2 and verdict.divergence.gap == pytest.approx(0.05)
    assert "rank 2: recorded b (score 0.5), replayed z (score 0.45), score gap 0.05" in verdict.detail


def test_ids_shuffled_over_the_same_scores_are_different() -> None:
    # Every score matches rank by rank, but the ids moved: no recorded near-tie explains that.
    replayed = {0: rows(("x", 0.9), ("y", 0.5), ("z", 0.4)), 1: RECORDED[1]}
    verdict = replay.compare_rounds(RECORDED, replayed)
    assert verdict.kind == DIFFERENT and "no near-tie explains it" in verdict.detail


def test_an_item_whose_own_score_moved_is_different() -> None:
    # Rank by rank the scores agree, but b and c swapped scores: an id-to-score mix-up, not a near-tie.
    recorded = {0: rows(("a", 0.9), ("b", 0.6), ("c", 0.5))}
    replayed = {0: rows(("a", 0.9), ("c", 0.6), ("b", 0.5))}
    verdict = replay.compare_rounds(recorded, replayed)
    assert verdict.kind == DIFFERENT and verdict.divergence.gap == pytest.approx(0.1)


def test_missing_extra_and_shorter_rounds_are_different() -> None:
    only_first = {0: RECORDED[0]}
    shorter = {0: RECORDED[0], 1: RECORDED[1][:2]}
    then = "1 round agrees, then "
    assert replay.compare_rounds(RECORDED, only_first).detail == then + "round 1 is missing from the replay"
    assert replay.compare_rounds(only_first, RECORDED).detail == then + "round 1 is not in the record"
    assert replay.compare_rounds(RECORDED, shorter).detail == then + "round 1 selects 2 items, the record 3"
    assert replay.compare_rounds({1: RECORDED[1]}, {}).detail == "round 1 is missing from the replay"


def test_missing_rounds_on_disk(tmp_path: Path) -> None:
    recorded = write_run(tmp_path / "rec", RECORDED)
    replayed = write_run(tmp_path / "rep", {0: RECORDED[0]})
    verdict = replay.compare_job(recorded, replayed)
    assert verdict.kind == DIFFERENT and verdict.detail == "1 round agrees, then round 1 is missing from the replay"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("item,score,rank\na,0.5,1\n", "the header must be item_id,score,rank"),
        ("item_id,score,rank\na,high,1\n", "line 2: expected item_id,score,rank"),
        ("item_id,score,rank\na,0.5,2\n", "line 2: rank 2, expected 1"),
    ],
)
def test_unreadable_recorded_selection_is_unusable(tmp_path: Path, text: str, message: str) -> None:
    recorded = write_run(tmp_path / "rec", RECORDED)
    (recorded / "selected" / "round_001.csv").write_text(text)
    with pytest.raises(replay.ReplayError, match=message):
        replay.compare_job(recorded, write_run(tmp_path / "rep", RECORDED))


def result(kind: str, differences: list[str] | None = None) -> replay.JobResult:
    divergence = replay.Divergence(0, 2, Row("b", 0.5), Row("c", 0.5000001), 1e-7) if kind != IDENTICAL else None
    return replay.JobResult(replay.Verdict(kind, "detail", divergence), differences or [])


def test_report_exit_status_and_loud_near_ties(capsys: pytest.CaptureFixture[str]) -> None:
    out = Path("out")
    assert replay.print_report({"j1": result(IDENTICAL), "j2": result(WITHIN_TOLERANCE)}, out, exact=False) == 0
    assert replay.print_report({"j1": result(IDENTICAL), "j2": result(NEAR_TIES)}, out, exact=False) == 0
    captured = capsys.readouterr()
    assert "warning: 1 of 2 runs flipped near-ties" in captured.err
    assert "j2: round 0, rank 2: recorded b (score 0.5), replayed c (score 0.5000001)" in captured.err
    assert "2 runs: 1 identical, 0 within tolerance, 1 near-ties flipped, 0 different" in captured.out
    assert replay.print_report({"j1": result(IDENTICAL), "j2": result(DIFFERENT)}, out, exact=False) == 1
    assert replay.print_report({"j1": result(IDENTICAL), "j2": result(WITHIN_TOLERANCE)}, out, exact=True) == 1
    assert replay.print_report({"j1": result(IDENTICAL)}, out, exact=True) == 0


def test_report_prints_environment_differences_once_per_group(capsys: pytest.CaptureFixture[str]) -> None:
    arch = "openblas in numpy.libs architecture: Haswell -> SkylakeX"
    results = {"j1": result(IDENTICAL, [arch]), "j2": result(IDENTICAL, [arch]),
               "old": result(IDENTICAL, ["environment not recorded"])}
    replay.print_report(results, Path("out"), exact=False)
    printed = capsys.readouterr().out
    assert printed.count(arch) == 1
    assert "environment (2 of 3 jobs), recorded -> this machine:" in printed
    assert "  environment not recorded" in printed


# --- the committed record -------------------------------------------------------------------------
def test_record_holds_only_small_replayable_files() -> None:
    jobs = replay.recorded_jobs(RECORD)
    assert len(jobs) == 4
    for job in jobs:
        names = {p.name for p in job.iterdir()}
        assert names == {"config.resolved.yaml", "metrics.jsonl", "summary.json", "selected"}
        assert len(list((job / "selected").glob("round_*.csv"))) == 3
        assert "environment" in json.loads((job / "summary.json").read_text())
    assert {"README.md", "report.md", "report.json", "learning_curves.png"} <= {p.name for p in RECORD.iterdir()}


def test_replay_refuses_a_folder_without_records(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "runner.replay", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr


@pytest.mark.slow
def test_replay_of_one_recorded_job_matches(tmp_path: Path) -> None:
    job = replay.recorded_jobs(RECORD)[0]
    record = tmp_path / "record"
    shutil.copytree(job, record / job.name)
    results = replay.replay(record, tmp_path / "out")
    assert list(results) == [job.name]
    assert results[job.name].verdict.kind in (IDENTICAL, WITHIN_TOLERANCE), results[job.name].verdict.line()
    assert (tmp_path / "out" / job.name / "state.sqlite").exists()


@pytest.mark.slow
def test_replay_command_on_the_whole_record(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "runner.replay", str(RECORD), "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 runs: " in done.stdout and "0 different" in done.stdout


def other_openblas_core() -> str | None:
    """An OpenBLAS kernel family this CPU runs but does not pick by itself (None: not x86 OpenBLAS)."""
    probe = ("import json, numpy, threadpoolctl; print(json.dumps([i.get('architecture') for i in "
             "threadpoolctl.threadpool_info() if i.get('internal_api') == 'openblas']))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    found = json.loads(done.stdout or "[]") if done.returncode == 0 else []
    if not found or os.uname().machine not in ("x86_64", "AMD64"):
        return None
    # Both need no more than AVX (Sandybridge) or SSE3 (Prescott), which every x86-64 CPU in use has.
    return next(core for core in ("Sandybridge", "Prescott") if core != found[0])


@pytest.mark.slow
def test_replay_on_another_blas_kernel_exits_0(tmp_path: Path) -> None:
    core = other_openblas_core()
    if core is None:
        pytest.skip("numpy does not use a runtime-dispatched x86 OpenBLAS here")
    job = replay.recorded_jobs(RECORD)[0]
    shutil.copytree(job, tmp_path / "record" / job.name)
    env = {**os.environ, "OPENBLAS_CORETYPE": core}
    done = subprocess.run([sys.executable, "-m", "runner.replay", str(tmp_path / "record"),
                           "--out", str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "out" / job.name / "summary.json").read_text())
    used = {lib.get("architecture") for lib in summary["environment"]["threadpools"] if lib["user_api"] == "blas"}
    assert used == {core}  # the replay really computed with the forced kernels


def test_replay_computes_with_the_recorded_kernels_when_it_can(monkeypatch: pytest.MonkeyPatch) -> None:
    def recorded(*names: str) -> dict:
        return {"threadpools": [{"folder": f"lib{i}", "user_api": "blas", "internal_api": "openblas",
                                 "architecture": name} for i, name in enumerate(names)]}

    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.setattr(replay.environment, "can_run_openblas_kernel", lambda name: name in ("Haswell", "Zen"))
    assert replay.recorded_kernel(recorded("Haswell", "Haswell")) == "Haswell"
    assert replay.recorded_kernel(recorded("SkylakeX")) is None  # this CPU could not run it
    assert replay.recorded_kernel(recorded("Haswell", "Zen")) is None  # one variable cannot set two families
    assert replay.recorded_kernel(None) is None and replay.recorded_kernel({}) is None
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Sandybridge")  # chosen by the user: left alone
    assert replay.recorded_kernel(recorded("Haswell")) is None

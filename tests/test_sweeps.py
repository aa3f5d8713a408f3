"""Sweeps through the CLI: job folders, launchers, skipping finished jobs, resuming a killed sweep, the report."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner import report

REPO = Path(__file__).resolve().parents[1]
# 2 acquisitions x 2 seeds x 2 rounds on digits.
SWEEP = ["+experiment=digits", "acquisition=entropy,random", "seed=0,1", "loop.rounds=2"]
JOBS = [f"+experiment=digits,acquisition={a},loop.rounds=2,seed={s}" for a in ("entropy", "random") for s in (0, 1)]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def sweep(sweep_dir: Path, *extra: str, python: str = sys.executable, check: bool = True,
          **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([python, "-m", "runner", "-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}", *extra],
                          cwd=REPO, capture_output=True, text=True, check=False, **kwargs)
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def stages(run_dir: Path) -> list[tuple]:
    """Every recorded stage with its measured seconds: a stage run again would record new seconds."""
    # Read-write on purpose: a killed job leaves a write-ahead log that only a writer may fold back in.
    conn = sqlite3.connect(run_dir / "state.sqlite")
    try:
        return conn.execute("SELECT round, stage, seconds FROM stages ORDER BY round, stage").fetchall()
    except sqlite3.OperationalError:  # killed while the store was being created: nothing recorded yet
        return []
    finally:
        conn.close()


def selections(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "selected").glob("*.csv"))}


def comparable_files(run_dir: Path) -> dict[str, object]:
    """A run's files, minus what legitimately differs between two runs: wall-clock seconds, and what the last
    invocation measured of itself (``resources``: time and memory per stage)."""
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in metrics:
        row.pop("seconds")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("stage_seconds_total")
    summary.pop("resources")
    return {
        "metrics": metrics,
        "summary": summary,
        "config": (run_dir / "config.resolved.yaml").read_text(),
        "selected": selections(run_dir),
        "curve": (run_dir / "learning_curve.png").read_bytes(),
    }


@pytest.mark.slow
def test_joblib_sweep_report_and_rerun_skips(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    sweep(root, *JOBLIB)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(JOBS)
    before = {job: (stages(root / job), (root / job / "summary.json").stat().st_mtime_ns) for job in JOBS}

    # The same command again: every job is found finished and nothing is recomputed or rewritten.
    again = sweep(root, *JOBLIB)
    assert again.stdout.count("already finished; skipping") == 4
    assert {job: (stages(root / job), (root / job / "summary.json").stat().st_mtime_ns) for job in JOBS} == before

    # The report's numbers, recomputed here from each run's metrics.jsonl.
    assert report.main([str(root), "--target", "0.85"]) == 0
    written = json.loads((root / "report.json").read_text())
    assert written["finished_runs"] == 4 and written["not_included"] == []
    finals: dict[tuple[str, int], float] = {}
    for row in written["configurations"]:
        acquisition = row["acquisition"]
        for run in row["runs"]:
            lines = (root / run["path"] / "metrics.jsonl").read_text().splitlines()
            curve = [(r["n_labeled"], r["test_accuracy"]) for r in map(json.loads, lines)]
            assert [n for n, _ in curve] == [20, 30, 40]
            area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(curve, curve[1:], strict=False)) / 20
            assert run["aulc"] == pytest.approx(area)
            assert run["final_accuracy"] == curve[-1][1]
            reached = [n for n, a in curve if a >= 0.85]
            assert run["labels_to_target"] == (reached[0] if reached else None)
            finals[acquisition, run["seed"]] = curve[-1][1]
        values = [finals[acquisition, s] for s in (0, 1)]
        assert row["final_accuracy"]["mean"] == pytest.approx(sum(values) / 2)
        assert row["final_accuracy"]["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    entropy = next(r for r in written["configurations"] if r["acquisition"] == "entropy")
    diffs = [finals["entropy", s] - finals["random", s] for s in (0, 1)]
    assert entropy["vs_random"]["final_accuracy"]["mean"] == pytest.approx(sum(diffs) / 2)
    assert (root / "report.md").exists() and (root / "learning_curves.png").exists()


@pytest.mark.slow
def test_selections_identical_across_launchers(tmp_path: Path) -> None:
    sweep(tmp_path / "basic")
    sweep(tmp_path / "joblib", *JOBLIB)
    for job in JOBS:
        assert selections(tmp_path / "basic" / job) == selections(tmp_path / "joblib" / job)
        assert len(selections(tmp_path / "basic" / job)) == 2


@pytest.mark.slow
def test_submitit_local_gives_the_same_selections(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="extra 'slurm' not installed")
    sweep(tmp_path / "basic")
    # submitit_local runs the jobs as submitit would on SLURM, as local subprocesses.
    sweep(tmp_path / "submitit", "hydra/launcher=submitit_local")
    for job in JOBS:
        assert selections(tmp_path / "basic" / job) == selections(tmp_path / "submitit" / job)


def _ray_python() -> str | None:
    """A Python that has the Ray launcher: this one, or the one named by AL_RUNNER_RAY_PYTHON."""
    for python in (os.environ.get("AL_RUNNER_RAY_PYTHON"), sys.executable):
        if python and subprocess.run([python, "-c", "import ray, hydra_plugins.hydra_ray_launcher"],
                                     capture_output=True, check=False).returncode == 0:
            return python
    return None


@pytest.mark.slow
def test_ray_launcher_on_loopback_gives_the_same_selections(tmp_path: Path) -> None:
    python = _ray_python()
    if python is None:
        pytest.skip("the Ray launcher is not installed (extra 'ray'; see docs/sweeps.md)")
    sweep(tmp_path / "basic")
    ray = ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2",
           "+hydra.launcher.ray.init.include_dashboard=false", "+hydra.launcher.ray.init._node_ip_address=127.0.0.1"]
    sweep(tmp_path / "ray", *ray, python=python, timeout=600)
    for job in JOBS:
        assert selections(tmp_path / "basic" / job) == selections(tmp_path / "ray" / job)


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    sweep(reference)

    root = tmp_path / "killed"
    first, second = root / JOBS[0], root / JOBS[1]
    process = subprocess.Popen([sys.executable, "-m", "runner", "-m", *SWEEP, f"hydra.sweep.dir={root}"],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        # The basic launcher runs jobs in order: kill once the first has finished and the second has begun.
        deadline = time.monotonic() + 300
        while not ((first / "summary.json").exists() and (second / "state.sqlite").exists()):
            assert process.poll() is None, "the sweep ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert not (root / JOBS[-1] / "summary.json").exists()

    finished = {job: stages(root / job) for job in JOBS if (root / job / "summary.json").exists()}
    partial = {job: stages(root / job) for job in JOBS if (root / job / "state.sqlite").exists()
               and job not in finished}
    assert JOBS[0] in finished

    again = sweep(root)
    assert again.stdout.count("already finished; skipping") == len(finished)
    for job, recorded in finished.items():
        assert stages(root / job) == recorded
    for job, recorded in partial.items():
        # Stages done before the kill keep their records (they were not run again); the rest were added.
        now = stages(root / job)
        assert set(recorded) <= set(now) and ("finish" in {s for _, s, _ in now})
    for job in JOBS:
        assert comparable_files(root / job) == comparable_files(reference / job)


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_others(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    # BALD needs MC samples, which logistic regression cannot give: that job fails, entropy runs to the end.
    done = subprocess.run([sys.executable, "-m", "runner", "-m", "+experiment=digits", "acquisition=bald,entropy",
                           "loop.rounds=1", f"hydra.sweep.dir={root}"],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "error: acquisition 'bald' needs MC samples" in done.stderr
    assert (root / "+experiment=digits,acquisition=entropy,loop.rounds=1" / "summary.json").exists()
    assert report.main([str(root)]) == 0
    written = json.loads((root / "report.json").read_text())
    # Refused before anything was written: the job directory holds Hydra's files only.
    assert [r["status"] for r in written["not_included"]] == ["broken"]
    assert "failed before its run started" in written["not_included"][0]["reason"]

"""``python -m runner.replay experiments/NAME``: run every recorded job again and check its selections.

Each recorded ``config.resolved.yaml`` is the complete config of its run (seed included), so it is handed to the
runner as the primary Hydra config, unchanged: the replayed run has the same config digest as the original.
Runs land in ``outputs/replay/NAME/<recorded relative path>`` (or ``--out``); a replay interrupted part-way
resumes like any run when the same command is given again. Exit status 0 means every ``selected/round_NNN.csv``
is byte-identical to the record; 1 means some differ (listed); 2 means the record or a run could not be used.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from runner import __version__
from runner.report import CONFIG_FILE, find_run_dirs


class ReplayError(Exception):
    """The record cannot be replayed (one line for the user)."""


def recorded_jobs(record: Path) -> list[Path]:
    if not record.is_dir():
        raise ReplayError(f"{record} is not a directory")
    jobs = [d for d in find_run_dirs(record) if (d / CONFIG_FILE).is_file()]
    if not jobs:
        raise ReplayError(f"{record} holds no recorded runs (no {CONFIG_FILE} under it)")
    return jobs


def replay_command(job: Path, run_dir: Path) -> list[str]:
    """The runner command that re-runs one recorded job into ``run_dir``."""
    return [
        sys.executable, "-m", "runner",
        "--config-dir", str(job.resolve()), "--config-name", Path(CONFIG_FILE).stem,
        f"hydra.run.dir={quote_override(str(run_dir.resolve()))}",
        # The recorded config carries no Hydra section, so ask for the runner's log format explicitly.
        "hydra/job_logging=runner",
    ]


def quote_override(value: str) -> str:
    """Quote a value for Hydra's override grammar: job folder names hold ``=`` and ``,`` (a sweep list)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def compare_job(job: Path, run_dir: Path) -> list[str]:
    """Differences between a recorded job and its replay: selection files must match byte for byte."""
    problems = []
    recorded = {p.name: p for p in (job / "selected").glob("round_*.csv")}
    replayed = {p.name: p for p in (run_dir / "selected").glob("round_*.csv")}
    for name in sorted(recorded.keys() | replayed.keys()):
        if name not in replayed:
            problems.append(f"{name} missing from the replay")
        elif name not in recorded:
            problems.append(f"{name} not in the record")
        elif recorded[name].read_bytes() != replayed[name].read_bytes():
            problems.append(f"{name} differs")
    return problems


def accuracy_note(job: Path, run_dir: Path) -> str | None:
    """Say so when final accuracies differ (information only: the selections are what must match)."""
    try:
        before = json.loads((job / "summary.json").read_text(encoding="utf-8"))["final_test_accuracy"]
        after = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["final_test_accuracy"]
    except (OSError, ValueError, KeyError):
        return None
    return None if before == after else f"final accuracy {after} (recorded {before})"


def recorded_version(job: Path) -> str | None:
    try:
        return json.loads((job / "summary.json").read_text(encoding="utf-8")).get("runner_version")
    except (OSError, ValueError):
        return None


def replay(record: Path, out: Path) -> dict[str, list[str]]:
    """Replay every job of ``record`` into ``out``; return the differences found per job (empty = identical).

    The thread count that float sums depend on is part of each recorded config (``threads``), so the runner
    pins it itself and a replay computes exactly as the recording did.
    """
    results: dict[str, list[str]] = {}
    for job in recorded_jobs(record):
        rel = job.relative_to(record)
        run_dir = out / rel
        version = recorded_version(job)
        if version is not None and version != __version__:
            print(f"note: {rel} was recorded with runner {version}; this is {__version__}", file=sys.stderr)
        print(f"replaying {rel.as_posix() or '.'}", flush=True)
        done = subprocess.run(replay_command(job, run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise ReplayError(f"{rel}: the run failed (exit {done.returncode}): {last}")
        results[rel.as_posix()] = compare_job(job, run_dir)
        note = accuracy_note(job, run_dir)
        if note:
            print(f"note: {rel}: {note}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.replay", description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path, help="a recorded experiment, e.g. experiments/NAME")
    parser.add_argument("--out", type=Path, default=None, help="where the replayed runs go "
                        "(default outputs/replay/NAME)")
    args = parser.parse_args(argv)
    out = args.out or Path("outputs") / "replay" / args.record.resolve().name
    try:
        results = replay(args.record, out)
    except ReplayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    differing = {job: problems for job, problems in results.items() if problems}
    for job, problems in differing.items():
        for problem in problems:
            print(f"{job}: {problem}")
    print(f"{len(results) - len(differing)} of {len(results)} runs replayed with identical selections -> {out}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())

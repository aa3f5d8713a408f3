"""``python -m runner.replay experiments/NAME``: run every recorded job again and check its selections.

Each recorded ``config.resolved.yaml`` is the complete config of its run (seed included), so it is handed to the
runner as the primary Hydra config, unchanged: the replayed run has the same config digest as the original.
Runs land in ``outputs/replay/NAME/<recorded relative path>`` (or ``--out``); a replay interrupted part-way
resumes like any run when the same command is given again.

Every ``selected/round_NNN.csv`` of the replay is compared with the record: item ids and their order exactly,
scores within ``SCORE_TOLERANCE`` (absolute for scores up to 1 in size, relative to the larger score beyond:
``|a - b| <= 1e-6 * max(1, |a|, |b|)``). Each job gets one verdict:

- identical: every selection file is byte-identical;
- within tolerance: the same items in the same order in every round, scores within the tolerance;
- near-ties flipped: the first divergence is explained by scores closer than the tolerance, so a last-digit
  float difference between machines can flip them: in that round the scores agree rank by rank, every item in
  both versions has the same score, and every item that moved is tied within the tolerance with another
  recorded item or with the budget's last pick. When only the order changed, later rounds are compared as
  well; when another item was picked, the labelled sets differ and later rounds legitimately diverge;
- different: anything else (a divergence no near-tie explains, scores beyond the tolerance, rounds missing).

Why 1e-6: scores computed from the same fitted model differ between BLAS kernels by about 1e-13 in float64
(digits record, four kernel families), and float32 arithmetic anywhere in the chain (torch models) rounds an
O(1) score at about 1e-7; 1e-6 covers both with room to spare. It stays below the gaps the rankings rest on:
of 8,775 neighbouring selected scores in the MNIST record, 5 are closer than 1e-6 (median gap 1e-3). What it
does not cover is an iterative solver that stops at other weights on another machine: that drift grows with the
labelled set and is reported as a difference (docs/reproducibility.md). Batch strategies encode their pick
order as scores ``(k - i) / k``, so a flip inside such a strategy shows as different.

Each job computes with the OpenBLAS kernel family its record names (``OPENBLAS_CORETYPE``) when this CPU can run
it and the variable is not set already, so that another machine with the same installation computes like the
recording one; ``--own-kernels`` keeps the kernels this CPU picks.

Exit status: 0 when every job is identical, within tolerance or flipped near-ties (reported as warnings on
stderr: a record made on another CPU may legitimately flip them, and that must not fail CI there); 1 when a job
is different (or, with ``--exact``, anything but identical: the check for the machine that made the record);
2 when the record or a run cannot be used. The environment each job was recorded in (``summary.json``) is
compared with the replay's, and the differences are printed; older records without it say "not recorded".
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import __version__, environment
from runner.runs import CONFIG_FILE, find_run_dirs

SCORE_TOLERANCE = 1e-6
IDENTICAL = "identical"
WITHIN_TOLERANCE = "within tolerance"
NEAR_TIES = "near-ties flipped"
DIFFERENT = "different"
SELECTION_HEADER = ["item_id", "score", "rank"]
ROUND_FILE = re.compile(r"round_(\d+)\.csv")


class ReplayError(Exception):
    """The record cannot be replayed (one line for the user)."""


@dataclass(frozen=True)
class Row:
    item_id: str
    score: float


@dataclass(frozen=True)
class Divergence:
    """Where a replayed round first departs from the record (rank counts from 1, as in the files)."""

    round: int
    rank: int
    recorded: Row
    replayed: Row
    gap: float  # between the two items' scores, both taken from the record where it has them

    def describe(self) -> str:
        return (
            f"round {self.round}, rank {self.rank}: recorded {self.recorded.item_id} "
            f"(score {self.recorded.score!r}), replayed {self.replayed.item_id} (score {self.replayed.score!r}), "
            f"score gap {self.gap:.3g}"
        )


@dataclass(frozen=True)
class Verdict:
    kind: str
    detail: str = ""
    divergence: Divergence | None = None
    largest_difference: float = 0.0  # between the scores of the same item at the same rank, rounds compared

    def line(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


def within_tolerance(a: float, b: float, tolerance: float = SCORE_TOLERANCE) -> bool:
    return abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))


# --- reading a run's selections -------------------------------------------------------------------
def read_selection(path: Path) -> list[Row]:
    """The rows of one ``selected/round_NNN.csv``, checked: header, numeric scores, ranks 1..n in order."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReplayError(f"{path}: cannot be read ({exc})") from None
    if not lines or lines[0] != SELECTION_HEADER:
        raise ReplayError(f"{path}: the header must be {','.join(SELECTION_HEADER)}")
    rows = []
    for number, fields in enumerate(lines[1:], start=2):
        try:
            item_id, score, rank = fields
            row, rank_value = Row(item_id, float(score)), int(rank)
        except ValueError:
            raise ReplayError(f"{path}, line {number}: expected item_id,score,rank") from None
        if rank_value != number - 1:
            raise ReplayError(f"{path}, line {number}: rank {rank_value}, expected {number - 1}")
        rows.append(row)
    return rows


def selection_files(run: Path) -> dict[int, Path]:
    """``{round: path}`` of a run's selection files."""
    found = {}
    for path in sorted((run / "selected").glob("round_*.csv")):
        match = ROUND_FILE.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


# --- comparing ----------------------------------------------------------------------------------------
def compare_job(job: Path, run_dir: Path, tolerance: float = SCORE_TOLERANCE) -> Verdict:
    """The verdict on one replayed job (see the module docstring); an unreadable record raises ReplayError."""
    recorded, replayed = selection_files(job), selection_files(run_dir)
    if not recorded:
        raise ReplayError(f"{job} holds no selected/round_NNN.csv")
    if recorded.keys() == replayed.keys() and all(
        recorded[r].read_bytes() == replayed[r].read_bytes() for r in recorded
    ):
        return Verdict(IDENTICAL)
    return compare_rounds(
        {r: read_selection(p) for r, p in recorded.items()},
        {r: read_selection(p) for r, p in replayed.items()},
        tolerance,
    )


def compare_rounds(recorded: dict[int, list[Row]], replayed: dict[int, list[Row]],
                   tolerance: float = SCORE_TOLERANCE) -> Verdict:
    """Compare selections round by round: ids and order exactly, scores within ``tolerance``."""
    largest = 0.0
    agreed = 0  # rounds compared without a difference
    flipped: Divergence | None = None

    def different(detail: str, divergence: Divergence | None = None) -> Verdict:
        before = f"{agreed} round{' agrees' if agreed == 1 else 's agree'}, then " if agreed else ""
        return Verdict(DIFFERENT, before + detail, divergence, largest)

    for round_ in sorted(recorded.keys() | replayed.keys()):
        mismatch = missing_round(round_, recorded, replayed)
        if mismatch is not None:
            return different(mismatch)
        before, after = recorded[round_], replayed[round_]
        divergence = first_divergence(round_, before, after)
        if divergence is None:
            problem, difference = score_difference(round_, before, after, tolerance)
            largest = max(largest, difference)
            if problem is not None:
                return different(problem)
            agreed += 1
            continue
        problem = flip_problem(divergence, before, after, tolerance)
        if problem is not None:
            return different(f"{divergence.describe()}; {problem}", divergence)
        flipped = flipped or divergence
        if {r.item_id for r in before} != {r.item_id for r in after}:
            # Another item was labelled, so the labelled sets differ from here on: later rounds may differ.
            return Verdict(NEAR_TIES, f"{flipped.describe()} (tolerance {tolerance:g}); later rounds not compared",
                           flipped, largest)
        agreed += 1
    if flipped is not None:
        return Verdict(NEAR_TIES, f"{flipped.describe()} (tolerance {tolerance:g}); only the order of near-tied "
                       "items changed, every round compared", flipped, largest)
    return Verdict(WITHIN_TOLERANCE, f"largest score difference {largest:.3g} (tolerance {tolerance:g})",
                   None, largest)


def missing_round(round_: int, recorded: dict[int, list[Row]], replayed: dict[int, list[Row]]) -> str | None:
    """Why ``round_`` cannot be compared item by item (absent on one side, or of another size), or None."""
    if round_ not in replayed:
        return f"round {round_} is missing from the replay"
    if round_ not in recorded:
        return f"round {round_} is not in the record"
    before, after = recorded[round_], replayed[round_]
    if len(before) != len(after):
        return f"round {round_} selects {len(after)} items, the record {len(before)}"
    return None


def score_difference(round_: int, before: list[Row], after: list[Row], tolerance: float) -> tuple[str | None, float]:
    """For a round with the same items in the same order: the first score beyond ``tolerance`` (or None), and
    the largest difference up to there."""
    largest = 0.0
    for rank, (old, new) in enumerate(zip(before, after, strict=True), start=1):
        if not within_tolerance(old.score, new.score, tolerance):
            return (f"round {round_}, rank {rank}: {old.item_id} scores {new.score!r}, recorded {old.score!r} "
                    f"(difference {abs(new.score - old.score):.3g}, tolerance {tolerance:g})"), largest
        largest = max(largest, abs(new.score - old.score))
    return None, largest


def flip_problem(divergence: Divergence, before: list[Row], after: list[Row], tolerance: float) -> str | None:
    """Why a round whose items differ is not a flip of near-ties, or None when it is."""
    if divergence.gap > tolerance * max(1.0, abs(divergence.recorded.score)):
        return f"beyond the tolerance {tolerance:g}"
    return unexplained(before, after, tolerance)


def first_divergence(round_: int, before: list[Row], after: list[Row]) -> Divergence | None:
    recorded_scores = {row.item_id: row.score for row in before}
    for rank, (old, new) in enumerate(zip(before, after, strict=True), start=1):
        if old.item_id != new.item_id:
            other = recorded_scores.get(new.item_id, new.score)
            return Divergence(round_, rank, old, new, abs(old.score - other))
    return None


def unexplained(before: list[Row], after: list[Row], tolerance: float) -> str | None:
    """Why a round whose ids differ is not explained by near-ties; None when it is."""
    replayed_scores = {row.item_id: row.score for row in after}
    beyond = f"beyond the tolerance {tolerance:g}"
    for rank, (old, new) in enumerate(zip(before, after, strict=True), start=1):
        if not within_tolerance(old.score, new.score, tolerance):
            return f"rank {rank} scores {new.score!r} against {old.score!r} recorded: {beyond}"
        again = replayed_scores.get(old.item_id)
        if again is not None and not within_tolerance(old.score, again, tolerance):
            return f"{old.item_id} scores {again!r} in the replay, {old.score!r} recorded: {beyond}"
    last = before[-1].score
    for rank, (old, new) in enumerate(zip(before, after, strict=True), start=1):
        if old.item_id == new.item_id or within_tolerance(old.score, last, tolerance):
            continue  # unmoved, or tied with the budget's last pick
        if not any(i != rank and within_tolerance(old.score, other.score, tolerance)
                   for i, other in enumerate(before, start=1)):
            return f"recorded {old.item_id} (rank {rank}) is tied with no other recorded item: no near-tie explains it"
    return None


# --- running ------------------------------------------------------------------------------------------
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


def read_summary(run: Path) -> dict[str, Any]:
    try:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def accuracy_note(recorded: dict[str, Any], replayed: dict[str, Any]) -> str | None:
    """Say so when final accuracies differ (information only: the selections are what is checked)."""
    before, after = recorded.get("final_test_accuracy"), replayed.get("final_test_accuracy")
    return None if before == after else f"final accuracy {after} (recorded {before})"


@dataclass(frozen=True)
class JobResult:
    verdict: Verdict
    environment_differences: list[str]
    kernel: str | None = None  # the recorded OpenBLAS kernel family the replay was made to compute with


def recorded_kernel(recorded_environment: dict[str, Any] | None) -> str | None:
    """The recorded OpenBLAS kernel family to compute with, when this machine can and nobody chose one."""
    if "OPENBLAS_CORETYPE" in os.environ:  # chosen explicitly, for instance to try another machine's kernels
        return None
    kernel = environment.openblas_kernel(recorded_environment)
    return kernel if kernel is not None and environment.can_run_openblas_kernel(kernel) else None


def replay(record: Path, out: Path, tolerance: float = SCORE_TOLERANCE,
           own_kernels: bool = False) -> dict[str, JobResult]:
    """Replay every job of ``record`` into ``out``; return the result per job (relative path).

    Unless ``own_kernels``, each job computes with the OpenBLAS kernels its record names where this CPU can
    run them, since BLAS kernels are what most often makes two machines differ in the last digits.
    """
    results: dict[str, JobResult] = {}
    for job in recorded_jobs(record):
        rel = job.relative_to(record)
        run_dir = out / rel
        recorded = read_summary(job)
        version = recorded.get("runner_version")
        if version is not None and version != __version__:
            print(f"note: {rel} was recorded with runner {version}; this is {__version__}", file=sys.stderr)
        print(f"replaying {rel.as_posix() or '.'}", flush=True)
        kernel = None if own_kernels else recorded_kernel(recorded.get("environment"))
        env = {**os.environ, "OPENBLAS_CORETYPE": kernel} if kernel else None
        done = subprocess.run(replay_command(job, run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, check=False, env=env)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise ReplayError(f"{rel}: the run failed (exit {done.returncode}): {last}")
        replayed = read_summary(run_dir)
        verdict = compare_job(job, run_dir, tolerance)
        differences = environment.differences(recorded.get("environment"),
                                              replayed.get("environment") or environment.describe())
        results[rel.as_posix()] = JobResult(verdict, differences, kernel)
        note = accuracy_note(recorded, replayed)
        if note and verdict.kind in (IDENTICAL, WITHIN_TOLERANCE):
            print(f"note: {rel}: {note}", file=sys.stderr)
    return results


def print_report(results: dict[str, JobResult], out: Path, exact: bool) -> int:
    """Print one line per job, the environment differences and the totals; return the exit status."""
    for job, result in results.items():
        print(f"{job}: {result.verdict.line()}")
    groups: dict[tuple[tuple[str, ...], str | None], list[str]] = {}
    for job, result in results.items():
        groups.setdefault((tuple(result.environment_differences), result.kernel), []).append(job)
    for (differences, kernel), jobs in groups.items():
        which = "every job" if len(jobs) == len(results) else f"{len(jobs)} of {len(results)} jobs"
        forced = f", computed with the recorded OpenBLAS kernels (OPENBLAS_CORETYPE={kernel})" if kernel else ""
        if not differences:
            print(f"environment ({which}{forced}): the same as recorded")
            continue
        print(f"environment ({which}{forced}), recorded -> this machine:")
        for line in differences:
            print(f"  {line}")
    counts = {kind: sum(r.verdict.kind == kind for r in results.values())
              for kind in (IDENTICAL, WITHIN_TOLERANCE, NEAR_TIES, DIFFERENT)}
    flipped = [job for job, r in results.items() if r.verdict.kind == NEAR_TIES]
    if flipped:
        print(f"warning: {len(flipped)} of {len(results)} runs flipped near-ties (scores closer than "
              f"{SCORE_TOLERANCE:g}), so their selections differ from the record after that point:", file=sys.stderr)
        for job in flipped:
            divergence = results[job].verdict.divergence
            print(f"warning:   {job}: {divergence.describe() if divergence else 'no divergence recorded'}",
                  file=sys.stderr)
    print(f"{len(results)} runs: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + f" -> {out}")
    if counts[DIFFERENT] or (exact and counts[IDENTICAL] != len(results)):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.replay", description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path, help="a recorded experiment, e.g. experiments/NAME")
    parser.add_argument("--out", type=Path, default=None, help="where the replayed runs go "
                        "(default outputs/replay/NAME)")
    parser.add_argument("--exact", action="store_true", help="fail unless every selection file is "
                        "byte-identical (for the machine and installation that made the record)")
    parser.add_argument("--own-kernels", action="store_true", help="compute with the OpenBLAS kernels this CPU "
                        "picks, not the recorded ones")
    args = parser.parse_args(argv)
    out = args.out or Path("outputs") / "replay" / args.record.resolve().name
    try:
        results = replay(args.record, out, own_kernels=args.own_kernels)
    except ReplayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return print_report(results, out, args.exact)


if __name__ == "__main__":
    sys.exit(main())

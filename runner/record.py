"""``python -m runner.record SWEEP_DIR experiments/NAME``: keep the small, replayable part of finished runs.

For every finished run under ``SWEEP_DIR`` it copies ``config.resolved.yaml`` (the whole config, seed included),
``summary.json`` (runner version, seed, config digest, results, environment), ``metrics.jsonl`` and
``selected/*.csv`` into ``experiments/NAME/<same relative path>``, then writes the sweep report there. The run
store (``state.sqlite``) is left out: it is large and is rebuilt by replaying
(``python -m runner.replay experiments/NAME``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from runner.runs import ReportError, load_runs
from runner.sweep_report import write_report

KEPT_FILES = ("config.resolved.yaml", "summary.json", "metrics.jsonl")


def record(source: Path, dest: Path, target: float = 0.9) -> list[str]:
    """Copy the finished runs of ``source`` into ``dest`` and report on them; return their relative paths."""
    runs = load_runs(source)
    finished = [r for r in runs if r.status == "finished"]
    if not finished:
        raise ReportError(f"{source} holds no finished runs to record")
    for run in finished:
        src, out = source / run.path, dest / run.path
        if out.exists():
            # Stale files from an earlier recording would mix two records; start this run's folder afresh.
            shutil.rmtree(out)
        (out / "selected").mkdir(parents=True)
        for name in KEPT_FILES:
            shutil.copy2(src / name, out / name)
        for csv in sorted((src / "selected").glob("round_*.csv")):
            shutil.copy2(csv, out / "selected" / csv.name)
    write_report(dest, target)
    return [r.path for r in finished]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.record", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a sweep directory (or folder of run directories)")
    parser.add_argument("dest", type=Path, help="where the record goes, e.g. experiments/NAME")
    parser.add_argument("--target", type=float, default=0.9, help="accuracy for the report's 'labels to target'")
    args = parser.parse_args(argv)
    try:
        paths = record(args.source, args.dest, args.target)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"recorded {len(paths)} runs in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m runner.report DIR``: compare the runs under a sweep directory (or any folder of run directories).

Writes ``report.html`` (figures and tables in one self-contained page, with links to each run's own page),
``report.md``, ``report.json`` and the figures as PNG files into ``DIR``. Runs are grouped into
configurations: runs whose resolved configs are equal once ``seed`` is removed. Per configuration, over its seeds:

- final accuracy: test accuracy at the last evaluated round;
- AULC: area under the learning curve (test accuracy against labelled count, trapezoid rule) divided by the
  labelled range, i.e. the mean accuracy over that range; a single evaluated round gives its accuracy;
- labels to target: the fewest labelled items at which test accuracy reached ``--target``;
- paired difference against ``random``: per seed, this configuration minus the ``random`` configuration with
  the same seed and otherwise equal config, then mean and std over the seeds the two share.

Spreads are sample standard deviations (n - 1); with one value there is none.

This module is the command line only. The work is done by, in order: ``runner.runs`` (reading the run
directories), ``runner.statistics`` (the numbers, no I/O), ``runner.sweep_summary`` (configurations and their
statistics: ``report.json``) and ``runner.sweep_report`` (``report.md``, the figures, ``report.html``, written
into ``DIR``). None of them imports this module.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Names scripts imported from here before the split (benchmarks/label_efficiency.py); they live in those modules.
from runner.runs import ReportError, RunResult, load_runs
from runner.statistics import area_under_curve, labels_to_target, mean_std
from runner.sweep_report import write_report

__all__ = ["RunResult", "area_under_curve", "labels_to_target", "load_runs", "main", "mean_std"]


def main(argv: list[str] | None = None) -> int:
    """The command: write the report into the directory; exit status 2 with one line when it cannot."""
    parser = argparse.ArgumentParser(prog="python -m runner.report", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a sweep directory or a folder of run directories")
    parser.add_argument("--target", type=float, default=0.9, help="accuracy for 'labels to target' (default 0.9)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.target <= 1.0:
        print(f"error: --target must be within [0, 1] (got {args.target})", file=sys.stderr)
        return 2
    try:
        report = write_report(args.directory, args.target)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for item in report["not_included"]:
        print(f"note: {item['path']} is {item['status']}: {item['reason']}", file=sys.stderr)
    print(f"{report['finished_runs']} finished runs, {len(report['configurations'])} configurations -> "
          f"{args.directory / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

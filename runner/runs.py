"""Reading run directories: which folders under a directory are runs, and what each one holds.

A run directory is one holding any of ``RUN_MARKERS``; its own subfolders are not searched. Each is read into a
:class:`RunResult`: ``finished`` (config, metrics and a summary that agrees with them), ``unfinished`` (no
summary yet) or ``broken`` (with the reason, in one line). Reading never raises for a bad run; only a directory
that holds no run at all raises :class:`ReportError`.

The sweep report (``runner.sweep_report``), committing records (``runner.record``) and replaying them
(``runner.replay``) read runs through this module; it imports nothing else from the runner, so that replay stays
free of the report's figures and pages.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_FILE = "config.resolved.yaml"
# Files that mark a directory as a run directory (finished, unfinished or broken).
RUN_MARKERS = (CONFIG_FILE, "state.sqlite", "metrics.jsonl", "summary.json", ".hydra")


class ReportError(Exception):
    """The directory cannot be reported on (one line for the user)."""


@dataclass
class RunResult:
    path: str
    status: str  # finished | unfinished | broken
    reason: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    curve: list[tuple[int, float]] = field(default_factory=list)
    tags: dict[str, int] = field(default_factory=dict)  # items per tag at the end of the run

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


def find_run_dirs(root: Path) -> list[Path]:
    """Directories under ``root`` (itself included) that hold run files; a run's own subfolders are not searched."""
    found = []
    stack = [root]
    while stack:
        here = stack.pop()
        if any((here / marker).exists() for marker in RUN_MARKERS):
            found.append(here)
            continue
        try:
            children = sorted(p for p in here.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue
        stack.extend(reversed(children))
    return sorted(found)


def load_run(run_dir: Path, root: Path) -> RunResult:
    """Read one run directory; never raises for a bad run, it says what is wrong instead."""
    rel = run_dir.relative_to(root).as_posix() or "."
    try:
        config = yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return RunResult(rel, "broken", f"no {CONFIG_FILE} (the job failed before its run started?)")
    except (OSError, yaml.YAMLError) as exc:
        return RunResult(rel, "broken", f"{CONFIG_FILE} unreadable: {str(exc).splitlines()[0]}")
    if not isinstance(config, dict):
        return RunResult(rel, "broken", f"{CONFIG_FILE} is not a mapping")
    try:
        rows = read_metrics(run_dir / "metrics.jsonl")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        rows = None
        metrics_problem = f"metrics.jsonl unreadable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    curve = [(int(r["n_labeled"]), float(r["test_accuracy"])) for r in rows or [] if r["test_accuracy"] is not None]
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        done = "no rounds yet" if not rows else f"{len(rows)} rounds evaluated so far"
        return RunResult(rel, "unfinished", f"no summary.json ({done})", config, curve)
    if rows is None:
        return RunResult(rel, "broken", metrics_problem, config)
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        recorded = summary["final_test_accuracy"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return RunResult(rel, "broken", f"summary.json unreadable: {type(exc).__name__}", config)
    if not curve:
        return RunResult(rel, "broken", "metrics.jsonl holds no evaluated round", config)
    # The summary is written last, from the same store; disagreement means files were mixed or edited.
    if recorded is None or not math.isclose(float(recorded), curve[-1][1], rel_tol=0, abs_tol=1e-12):
        return RunResult(rel, "broken", "summary.json final accuracy disagrees with metrics.jsonl", config)
    return RunResult(rel, "finished", "", config, curve, dict(summary.get("tags") or {}))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl``: labelled count and test accuracy (None where the round was not evaluated)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append({"n_labeled": int(row["n_labeled"]), "test_accuracy": row["test_accuracy"]})
    return rows


def load_runs(root: Path) -> list[RunResult]:
    """Every run directory under ``root``, read; :class:`ReportError` when ``root`` is no directory or holds none."""
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory")
    dirs = find_run_dirs(root)
    if not dirs:
        raise ReportError(f"{root} holds no runs (no run directory with {CONFIG_FILE} or state.sqlite under it)")
    return [load_run(d, root) for d in dirs]

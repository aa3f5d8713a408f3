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

Spreads are sample standard deviations (n - 1); with one value there is none. Only the computation functions
touch numbers; :func:`main` is the thin command line around them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plugins.files import atomic_write_text

CONFIG_FILE = "config.resolved.yaml"
# Files that mark a directory as a run directory (finished, unfinished or broken).
RUN_MARKERS = (CONFIG_FILE, "state.sqlite", "metrics.jsonl", "summary.json", ".hydra")
# Keys named by the label columns (or irrelevant to grouping), so never shown as extra setting columns.
LABEL_KEYS = ("seed", "project.", "acquisition.", "model._target_", "model.estimator._target_", "model.module._target_")
RANDOM = "random"


class ReportError(Exception):
    """The directory cannot be reported on (one line for the user)."""


@dataclass
class RunResult:
    path: str
    status: str  # finished | unfinished | broken
    reason: str = ""
    config: dict = field(default_factory=dict)
    curve: list[tuple[int, float]] = field(default_factory=list)
    tags: dict[str, int] = field(default_factory=dict)  # items per tag at the end of the run

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


# --- pure computation -------------------------------------------------------------------------------
def area_under_curve(curve: list[tuple[int, float]]) -> float | None:
    """Trapezoid area under accuracy-vs-labelled, divided by the labelled range (mean accuracy over it)."""
    if not curve:
        return None
    points = sorted(curve)
    if len(points) == 1 or points[-1][0] == points[0][0]:
        return float(points[-1][1])
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False))
    return float(area / (points[-1][0] - points[0][0]))


def labels_to_target(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first labelled count (in round order) at which accuracy is at least ``target``; None if never."""
    for n_labeled, accuracy in curve:
        if accuracy >= target:
            return int(n_labeled)
    return None


def mean_std(values: list[float]) -> dict:
    """``{"n", "mean", "std"}`` with the sample std (n - 1); mean and std are None where undefined."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": float(mean), "std": None if std is None else float(std)}


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[dict]:
    """Mean and std of accuracy at every labelled count, over the runs evaluated at that count."""
    by_x: dict[int, list[float]] = {}
    for curve in curves:
        for x, y in curve:
            by_x.setdefault(int(x), []).append(float(y))
    return [{"n_labeled": x, **mean_std(ys)} for x, ys in sorted(by_x.items())]


def mean_tags(per_run: list[dict[str, int]]) -> dict[str, float]:
    """Items per tag, averaged over runs (a run without a tag counts 0 for it)."""
    names = sorted({tag for tags in per_run for tag in tags})
    return {tag: sum(tags.get(tag, 0) for tags in per_run) / len(per_run) for tag in names} if per_run else {}


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaf values; lists stay whole (they are compared as values)."""
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: node}


def without_seed(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "seed"}


def model_label(config: dict) -> str:
    """A short model name: the wrapped estimator or module class if there is one, else the plugin class."""
    model = config.get("model") or {}
    for inner in ("estimator", "module"):
        target = (model.get(inner) or {}).get("_target_") if isinstance(model.get(inner), dict) else None
        if target:
            return str(target).rsplit(".", 1)[-1]
    return str(model.get("_target_", "?")).rsplit(".", 1)[-1]


def setting_columns(configs: list[dict]) -> list[str]:
    """Dotted keys (besides seed, project, acquisition, model class) on which configurations differ.

    A key counts only where at least two configurations have it with different values, so switching the model
    from logistic regression to the CNN does not turn every model-specific key into a column.
    """
    values: dict[str, set[str]] = {}
    for config in configs:
        for key, value in flatten(config).items():
            if not key.startswith(LABEL_KEYS):
                values.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    return sorted(key for key, seen in values.items() if len(seen) > 1)


def paired_difference(runs: list[RunResult], baseline: list[RunResult], metric: str, target: float) -> dict:
    """Per seed present in both: this metric minus the baseline's; mean and std of the differences."""
    mine = {r.seed: run_metrics(r, target)[metric] for r in sorted(runs, key=lambda r: r.path)}
    theirs = {r.seed: run_metrics(r, target)[metric] for r in sorted(baseline, key=lambda r: r.path)}
    seeds = sorted(s for s in mine.keys() & theirs.keys() if mine[s] is not None and theirs[s] is not None)
    diffs = [mine[s] - theirs[s] for s in seeds]
    return {"seeds": seeds, "per_seed": diffs, **mean_std(diffs)}


def paired_curve_difference(runs: list[RunResult], baseline: list[RunResult]) -> list[dict]:
    """At every labelled count, per seed present in both at that count: this accuracy minus the baseline's; mean
    and std of the differences."""
    mine = {r.seed: dict(r.curve) for r in sorted(runs, key=lambda r: r.path)}
    theirs = {r.seed: dict(r.curve) for r in sorted(baseline, key=lambda r: r.path)}
    by_x: dict[int, list[float]] = {}
    for seed in sorted(mine.keys() & theirs.keys(), key=str):
        for x in sorted(mine[seed].keys() & theirs[seed].keys()):
            by_x.setdefault(x, []).append(mine[seed][x] - theirs[seed][x])
    return [{"n_labeled": x, **mean_std(d)} for x, d in sorted(by_x.items())]


def run_metrics(run: RunResult, target: float) -> dict:
    return {
        "final_accuracy": run.curve[-1][1] if run.curve else None,
        "aulc": area_under_curve(run.curve),
        "labels_to_target": labels_to_target(run.curve, target),
    }


def summarize(runs: list[RunResult], target: float) -> dict:
    """Everything ``report.json`` holds, computed from loaded runs."""
    finished = [r for r in runs if r.status == "finished"]
    groups: dict[str, list[RunResult]] = {}
    for run in finished:
        groups.setdefault(json.dumps(without_seed(run.config), sort_keys=True), []).append(run)
    columns = setting_columns([json.loads(key) for key in groups])

    rows = []
    for key, members in groups.items():
        config = json.loads(key)
        flat = flatten(config)
        members = sorted(members, key=lambda r: (str(r.seed), r.path))
        per_run = [{"path": r.path, "seed": r.seed, **run_metrics(r, target)} for r in members]
        reached = [p["labels_to_target"] for p in per_run if p["labels_to_target"] is not None]
        row = {
            "project": (config.get("project") or {}).get("name"),
            "acquisition": (config.get("acquisition") or {}).get("name"),
            "model": model_label(config),
            "settings": {c: flat.get(c) for c in columns},
            "seeds": [r.seed for r in members],
            "final_accuracy": mean_std([p["final_accuracy"] for p in per_run]),
            "aulc": mean_std([p["aulc"] for p in per_run]),
            "labels_to_target": {
                **(mean_std([float(v) for v in reached]) if len(reached) == len(per_run) else mean_std([])),
                "reached": len(reached),
                "runs": len(per_run),
            },
            "curve": mean_curve([r.curve for r in members]),
            "tags": mean_tags([r.tags for r in members]),
            "runs": per_run,
            "vs_random": None,
        }
        if row["acquisition"] != RANDOM:
            others = {k: v for k, v in config.items() if k != "acquisition"}
            baseline = next(
                (
                    g
                    for k, g in groups.items()
                    if (json.loads(k).get("acquisition") or {}).get("name") == RANDOM
                    and {kk: vv for kk, vv in json.loads(k).items() if kk != "acquisition"} == others
                ),
                None,
            )
            if baseline is not None:
                row["vs_random"] = {
                    "final_accuracy": paired_difference(members, baseline, "final_accuracy", target),
                    "aulc": paired_difference(members, baseline, "aulc", target),
                    "labels_to_target": paired_difference(members, baseline, "labels_to_target", target),
                    "curve": paired_curve_difference(members, baseline),
                }
        rows.append(row)
    rows.sort(key=lambda r: (str(r["project"]), r["model"], json.dumps(r["settings"], sort_keys=True),
                             r["acquisition"] == RANDOM, str(r["acquisition"])))
    return {
        "target_accuracy": target,
        "setting_columns": columns,
        "configurations": rows,
        "finished_runs": len(finished),
        "not_included": [
            {"path": r.path, "status": r.status, "reason": r.reason} for r in runs if r.status != "finished"
        ],
    }


# --- reading run directories ------------------------------------------------------------------------
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


def read_metrics(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append({"n_labeled": int(row["n_labeled"]), "test_accuracy": row["test_accuracy"]})
    return rows


def load_runs(root: Path) -> list[RunResult]:
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory")
    dirs = find_run_dirs(root)
    if not dirs:
        raise ReportError(f"{root} holds no runs (no run directory with {CONFIG_FILE} or state.sqlite under it)")
    return [load_run(d, root) for d in dirs]


# --- rendering --------------------------------------------------------------------------------------
def format_stat(stat: dict, digits: int = 4, signed: bool = False) -> str:
    if stat["mean"] is None:
        return "–"
    mean = f"{stat['mean']:+.{digits}f}" if signed else f"{stat['mean']:.{digits}f}"
    return mean if stat["std"] is None else f"{mean} ± {stat['std']:.{digits}f}"


def _cell(value: Any) -> str:
    return "–" if value is None else str(value).replace("|", "\\|")


def render_markdown(report: dict, source: str) -> str:
    target = report["target_accuracy"]
    columns = report["setting_columns"]
    lines = [
        "# Sweep report",
        "",
        f"`{source}`: {report['finished_runs']} finished runs in {len(report['configurations'])} configurations.",
        "",
        "Mean ± sample std over seeds. Final accuracy: test accuracy at the last round. AULC: area under the "
        "learning curve (trapezoid over labelled count) divided by the labelled range. Labels to target: fewest "
        f"labelled items with test accuracy ≥ {target}. Δ vs random: per seed, this configuration minus `random` "
        "with the same seed and settings.",
        "",
    ]
    show_tags = any(row["tags"] for row in report["configurations"])
    header = ["project", "acquisition", "model", *columns, "seeds", "final accuracy", "AULC",
              f"labels to {target}", "Δ final vs random", "Δ AULC vs random", f"Δ labels to {target} vs random",
              *(["tags (items per run)"] * show_tags)]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in report["configurations"]:
        ltt = row["labels_to_target"]
        if ltt["reached"] == ltt["runs"]:
            labels = format_stat(ltt, digits=1)
        else:
            labels = f"not reached ({ltt['reached']}/{ltt['runs']} seeds)"
        vs = row["vs_random"]
        cells = [
            _cell(row["project"]), _cell(row["acquisition"]), _cell(row["model"]),
            *(_cell(row["settings"][c]) for c in columns),
            str(len(row["seeds"])), format_stat(row["final_accuracy"]), format_stat(row["aulc"]), labels,
            format_stat(vs["final_accuracy"], signed=True) if vs else "–",
            format_stat(vs["aulc"], signed=True) if vs else "–",
            format_stat(vs["labels_to_target"], digits=1, signed=True) if vs else "–",
            *([", ".join(f"{t} {n:g}" for t, n in row["tags"].items()) or "–"] * show_tags),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if report["not_included"]:
        lines += ["", "## Runs not included", "", "| run | status | why |", "|---|---|---|"]
        lines += [f"| `{r['path']}` | {r['status']} | {_cell(r['reason'])} |" for r in report["not_included"]]
    lines += ["", "![learning curves](learning_curves.png)", ""]
    if any(row["vs_random"] for row in report["configurations"]):
        lines += ["![difference from random](difference_from_random.png)", ""]
    lines += ["![area under the curve and labels to target](aulc_labels_to_target.png)", ""]
    return "\n".join(lines)


# --- figures and the page ---------------------------------------------------------------------------------
def short_keys(columns: list[str]) -> dict[str, str]:
    """Each dotted setting key by its shortest ending that no other column shares (``selection.budget`` ->
    ``budget``)."""
    found = {}
    for column in columns:
        parts = column.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(other != column and (other == tail or other.endswith("." + tail)) for other in columns):
                break
        found[column] = tail
    return found


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def readable_names(rows: list[dict], columns: list[str]) -> list[str]:
    """Per configuration, only the choices that differ among ``rows``: project, acquisition, model and the setting
    columns (by their short key); the acquisition alone where nothing differs."""
    short = short_keys(columns)
    varying = [key for key in ("project", "acquisition", "model") if len({str(r[key]) for r in rows}) > 1]
    settings = [c for c in columns if len({json.dumps(r["settings"][c], sort_keys=True) for r in rows}) > 1]
    names = []
    for row in rows:
        parts = [str(row[key]) for key in varying]
        parts += [f"{short[c]} {_value(row['settings'][c])}" for c in settings]
        names.append(" · ".join(parts) or str(row["acquisition"]))
    return names


def panels(rows: list[dict]) -> list[tuple[str, list[int]]]:
    """Which configurations share a panel: one per project, and within it one per model when the models' ranges
    of labelled items differ (a CNN's 20-70 labels and a logistic regression's 20-1,020 would hide each other)."""
    found: dict[str, dict[str, list[int]]] = {}
    for i, row in enumerate(rows):
        found.setdefault(str(row["project"]), {}).setdefault(str(row["model"]), []).append(i)
    result = []
    for project, models in found.items():
        spans = {
            model: (min(p["n_labeled"] for i in members for p in rows[i]["curve"]),
                    max(p["n_labeled"] for i in members for p in rows[i]["curve"]))
            for model, members in models.items() if any(rows[i]["curve"] for i in members)
        }
        if len(set(spans.values())) <= 1:
            result.append((project, [i for members in models.values() for i in members]))
        else:
            result += [(f"{project} · {model}", members) for model, members in models.items()]
    return result


def sweep_figures(report: dict) -> list[tuple[str, str, str, bytes]]:
    """``(file name, title, caption, png)`` of each figure of the sweep."""
    from runner import figures

    rows = report["configurations"]
    if not rows:
        return []
    columns = report["setting_columns"]
    names = readable_names(rows, columns)
    groups = panels(rows)
    # Within a panel a configuration is named by what differs there; one name keeps one colour in every panel.
    local: dict[int, str] = {}
    for _, members in groups:
        local.update(zip(members, readable_names([rows[i] for i in members], columns), strict=True))
    colours: dict[str, str] = {}
    for i, row in enumerate(rows):
        if row["acquisition"] != RANDOM and local[i] not in colours:
            colours[local[i]] = figures.PALETTE[len(colours) % len(figures.PALETTE)]
    colour = {i: colours.get(local[i], figures.BASELINE) for i in range(len(rows))}
    seeds = {len(r["seeds"]) for r in rows}

    def series(indices: list[int], points: Callable[[dict], list[dict] | None]) -> list[dict]:
        found = []
        for i in indices:
            curve = points(rows[i])
            if curve:
                suffix = f" (n={len(rows[i]['seeds'])})" if len(seeds) > 1 else ""
                found.append({"label": local[i] + suffix, "random": rows[i]["acquisition"] == RANDOM,
                              "colour": colour[i], "points": [(p["n_labeled"], p["mean"], p["std"]) for p in curve]})
        return found

    seeds_note = (f"{min(seeds)} seed{'s' if min(seeds) > 1 else ''}" if len(seeds) == 1
                  else "n seeds as the legend says")
    target = report["target_accuracy"]
    result = [(
        "learning_curves.png", "Learning curves",
        f"Mean test accuracy over seeds ({seeds_note}) against labelled items; the band is one standard deviation "
        f"either side; random is dashed; the dotted line is the target accuracy {target:g}.",
        figures.sweep_curves([{"title": title, "series": series(members, lambda r: r["curve"])}
                              for title, members in groups], target),
    )]
    if any(r["vs_random"] for r in rows):
        differences = [
            {"title": title, "series": series(members, lambda r: (r["vs_random"] or {}).get("curve"))}
            for title, members in groups
        ]
        result.append((
            "difference_from_random.png", "Difference from random",
            "Test accuracy minus random's at the same labelled count, paired by seed (same seed and settings), "
            "mean and one standard deviation over seeds; above zero beats random.",
            figures.sweep_curves([panel for panel in differences if panel["series"]], target, difference=True),
        ))
    spread = []
    for i, (name, row) in enumerate(zip(names, rows, strict=True)):
        spread.append({
            "label": name, "colour": colour[i],
            "aulc": {**row["aulc"], "values": [r["aulc"] for r in row["runs"]]},
            "labels_to_target": {**row["labels_to_target"], "values": [r["labels_to_target"] for r in row["runs"]]},
        })
    result.append((
        "aulc_labels_to_target.png", "Area under the curve and labels to target",
        "Each dot is one seed; the bar is the mean with one standard deviation either side. Labels to target: an "
        f"open circle at the right edge is a seed that never reached {target:g} (no mean is drawn then).",
        figures.sweep_summary(spread, target),
    ))
    return result


def write_report(root: Path, target: float = 0.9) -> dict:
    """Load the runs under ``root``, write the report files into it, return the report."""
    from runner import html_report
    from runner.artifacts import write_bytes

    runs = load_runs(root)
    report = summarize(runs, target)
    report["runs"] = [{"path": r.path, "status": r.status} for r in runs]
    atomic_write_text(root / "report.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    atomic_write_text(root / "report.md", render_markdown(report, root.name or str(root)))
    drawn = sweep_figures(report)
    for name, _, _, image in drawn:
        write_bytes(root / name, image)
    names = readable_names(report["configurations"], report["setting_columns"])
    links = {r.path: f"{r.path}/report.html" for r in runs if (root / r.path / "report.html").is_file()}
    page = html_report.sweep_page(report, root.name or str(root), names, [(t, c, i) for _, t, c, i in drawn], links)
    atomic_write_text(root / "report.html", page)
    return report


def main(argv: list[str] | None = None) -> int:
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


"""The sweep's report files, written into the sweep directory: ``report.json``, ``report.md``, the figures as
PNG files, and ``report.html`` (figures and tables in one self-contained page, with links to each run's own page).

:func:`write_report` loads the runs (``runner.runs``), summarizes them (``runner.sweep_summary``) and writes the
files; this module decides what the sweep's pages show: the markdown table, and the figure layout (which
configurations share a panel, what each is called there, its colour, the captions). The drawing is
``runner.figures``'s, the HTML page ``runner.html_report``'s; ``python -m runner.report`` is the command around it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plugins.files import atomic_write_text
from runner import figures, html_report
from runner.artifacts import write_bytes
from runner.formatting import format_stat
from runner.runs import load_runs
from runner.sweep_summary import RANDOM, summarize


# --- report.md ------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    return "–" if value is None else str(value).replace("|", "\\|")


def render_markdown(report: dict[str, Any], source: str) -> str:
    """``report.md``: one table row per configuration, the runs left out, and the figures by file name."""
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


# --- the figures' layout --------------------------------------------------------------------------------
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


def readable_names(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
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


def panels(rows: list[dict[str, Any]]) -> list[tuple[str, list[int]]]:
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


def sweep_figures(report: dict[str, Any]) -> list[tuple[str, str, str, bytes]]:
    """``(file name, title, caption, png)`` of each figure of the sweep."""
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

    def series(indices: list[int],
               points: Callable[[dict[str, Any]], list[dict[str, Any]] | None]) -> list[dict[str, Any]]:
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


# --- writing the files ----------------------------------------------------------------------------------
def write_report(root: Path, target: float = 0.9) -> dict[str, Any]:
    """Load the runs under ``root``, write the report files into it, return the report."""
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

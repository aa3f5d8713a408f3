"""The sweep summary: loaded runs grouped into configurations, each with its statistics over seeds (``report.json``).

Runs are grouped into configurations: finished runs whose resolved configs are equal once ``seed`` is removed.
Per configuration, over its seeds: final accuracy, AULC and labels to target (``runner.statistics``), the mean
learning curve and the mean items per tag; and, for any acquisition but ``random``, the paired difference against
the ``random`` configuration with otherwise equal config: per seed, this configuration minus random with the same
seed, then mean and std over the seeds the two share. Configurations are named by project, acquisition, model
class and the setting columns: the dotted config keys on which configurations differ.

This module computes the summary from :class:`runner.runs.RunResult` values and writes nothing; the files made of
it are ``runner.sweep_report``'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from runner.runs import RunResult
from runner.statistics import (
    curve_metrics,
    mean_curve,
    mean_std,
    mean_tags,
    paired_curve_difference,
    paired_difference,
)

# Keys named by the label columns (or irrelevant to grouping), so never shown as extra setting columns.
LABEL_KEYS = ("seed", "project.", "acquisition.", "model._target_", "model.estimator._target_", "model.module._target_")
RANDOM = "random"


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaf values; lists stay whole (they are compared as values)."""
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: node}


def without_seed(config: dict[str, Any]) -> dict[str, Any]:
    """The config less its ``seed``: what the runs of one configuration share."""
    return {k: v for k, v in config.items() if k != "seed"}


def model_label(config: dict[str, Any]) -> str:
    """A short model name: the wrapped estimator or module class if there is one, else the plugin class."""
    model = config.get("model") or {}
    for inner in ("estimator", "module"):
        target = (model.get(inner) or {}).get("_target_") if isinstance(model.get(inner), dict) else None
        if target:
            return str(target).rsplit(".", 1)[-1]
    return str(model.get("_target_", "?")).rsplit(".", 1)[-1]


def setting_columns(configs: list[dict[str, Any]]) -> list[str]:
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


def by_seed(runs: list[RunResult], value: Callable[[RunResult], Any]) -> dict[Any, Any]:
    """``value`` of each run by its seed (runs in path order, so of two runs with one seed the later path's)."""
    return {r.seed: value(r) for r in sorted(runs, key=lambda r: r.path)}


def metric_by_seed(runs: list[RunResult], metric: str, target: float) -> dict[Any, Any]:
    """One of :func:`runner.statistics.curve_metrics` of each run, by its seed."""
    return by_seed(runs, lambda r: curve_metrics(r.curve, target)[metric])


def versus(runs: list[RunResult], baseline: list[RunResult], target: float) -> dict[str, Any]:
    """This configuration's runs against the baseline's, paired by seed: each metric and the learning curve."""
    found: dict[str, Any] = {
        metric: paired_difference(metric_by_seed(runs, metric, target), metric_by_seed(baseline, metric, target))
        for metric in ("final_accuracy", "aulc", "labels_to_target")
    }
    found["curve"] = paired_curve_difference(by_seed(runs, lambda r: r.curve), by_seed(baseline, lambda r: r.curve))
    return found


def summarize(runs: list[RunResult], target: float) -> dict[str, Any]:
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
        per_run = [{"path": r.path, "seed": r.seed, **curve_metrics(r.curve, target)} for r in members]
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
                row["vs_random"] = versus(members, baseline, target)
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

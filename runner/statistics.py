"""The numbers of the sweep report, from learning curves: pure functions of plain values, no files, no runs.

A learning curve is a list of ``(labelled count, test accuracy)`` pairs in round order. From it:

- final accuracy: test accuracy at the last evaluated round;
- AULC: area under the curve (trapezoid rule) divided by the labelled range, i.e. the mean accuracy over that
  range; a single evaluated round gives its accuracy;
- labels to target: the first labelled count (in round order) at which test accuracy reached the target.

Spreads are sample standard deviations (n - 1); with one value there is none. Paired differences take values per
seed (this configuration's and the baseline's) and compare the seeds both have.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

Curve = list[tuple[int, float]]


def area_under_curve(curve: Curve) -> float | None:
    """Trapezoid area under accuracy-vs-labelled, divided by the labelled range (mean accuracy over it)."""
    if not curve:
        return None
    points = sorted(curve)
    if len(points) == 1 or points[-1][0] == points[0][0]:
        return float(points[-1][1])
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False))
    return float(area / (points[-1][0] - points[0][0]))


def labels_to_target(curve: Curve, target: float) -> int | None:
    """The first labelled count (in round order) at which accuracy is at least ``target``; None if never."""
    for n_labeled, accuracy in curve:
        if accuracy >= target:
            return int(n_labeled)
    return None


def curve_metrics(curve: Curve, target: float) -> dict[str, Any]:
    """``{"final_accuracy", "aulc", "labels_to_target"}`` of one run's curve; None where the curve is empty."""
    return {
        "final_accuracy": curve[-1][1] if curve else None,
        "aulc": area_under_curve(curve),
        "labels_to_target": labels_to_target(curve, target),
    }


def mean_std(values: list[float]) -> dict[str, Any]:
    """``{"n", "mean", "std"}`` with the sample std (n - 1); mean and std are None where undefined."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": float(mean), "std": None if std is None else float(std)}


def mean_curve(curves: list[Curve]) -> list[dict[str, Any]]:
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


def paired_difference(mine: Mapping[Any, float | None], theirs: Mapping[Any, float | None]) -> dict[str, Any]:
    """Per seed with a value on both sides: ``mine`` minus ``theirs``; the seeds, the differences, their mean and
    std."""
    both = {s: (a, b) for s in mine.keys() & theirs.keys()
            if (a := mine[s]) is not None and (b := theirs[s]) is not None}
    seeds = sorted(both)
    diffs = [both[s][0] - both[s][1] for s in seeds]
    return {"seeds": seeds, "per_seed": diffs, **mean_std(diffs)}


def paired_curve_difference(mine: Mapping[Any, Curve], theirs: Mapping[Any, Curve]) -> list[dict[str, Any]]:
    """At every labelled count, per seed whose curves both have that count: ``mine`` minus ``theirs``; mean and
    std of the differences."""
    by_x: dict[int, list[float]] = {}
    for seed in sorted(mine.keys() & theirs.keys(), key=str):
        ours, baseline = dict(mine[seed]), dict(theirs[seed])
        for x in sorted(ours.keys() & baseline.keys()):
            by_x.setdefault(x, []).append(ours[x] - baseline[x])
    return [{"n_labeled": x, **mean_std(d)} for x, d in sorted(by_x.items())]

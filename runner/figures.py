"""The figures of the run and sweep reports, in one style, saved byte-stable.

Drawn with matplotlib's object-oriented ``Figure`` (no pyplot, no GUI backend) and saved as PNG without software
or date metadata, so that the same numbers always give the same bytes (a resumed run ends with the same files).
Every function takes plain numbers and returns PNG bytes; the reports decide where the bytes go.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 144
INK = "#1f2933"
MUTED = "#7b8794"
ACCENT = "#d9480f"
BASELINE = "#52606d"
# Colour-blind-safe qualitative colours (Okabe and Ito), the baseline excluded.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
STAGE_COLOURS = {"train": "#0072B2", "evaluate": "#56B4E9", "score": "#E69F00", "select": "#009E73",
                 "act": "#CC79A7", "embed": "#999999", "metrics": "#BBBBBB"}
STYLE: dict[Any, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.edgecolor": MUTED,
    "axes.labelcolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e4e7eb",
    "grid.linewidth": 0.8,
    "xtick.color": INK,
    "ytick.color": INK,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}


@contextmanager
def styled() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float, layout: Literal["constrained"] | None = "constrained",
               **subplots: Any) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    return fig, fig.subplots(**subplots)


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


# --- one run ----------------------------------------------------------------------------------------------------
def learning_curve(points: Sequence[tuple[int, float]], title: str, target: float | None) -> bytes:
    """Test accuracy against labelled items, the target accuracy as a dotted line."""
    with styled():
        fig, ax = new_figure(6.4, 3.6)
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=PALETTE[0], marker="o", markersize=3, linewidth=1.6)
            ax.annotate(f"{ys[-1]:.3f}", (xs[-1], ys[-1]), textcoords="offset points", xytext=(4, -10),
                        fontsize=8, color=PALETTE[0])
        if target is not None:
            ax.axhline(target, color=MUTED, linestyle=":", linewidth=1)
            ax.annotate(f"target {target:g}", (0, target), xycoords=("axes fraction", "data"),
                        textcoords="offset points", xytext=(2, 3), fontsize=7, color=MUTED)
        ax.set_xlabel("labelled items")
        ax.set_ylabel("test accuracy")
        ax.set_title(title, loc="left")
        return png(fig)


def training_loss(losses: np.ndarray, title: str) -> bytes:
    """An embedder's training loss per epoch."""
    with styled():
        fig, ax = new_figure(6.4, 3.0)
        epochs = np.arange(1, len(losses) + 1)
        ax.plot(epochs, losses, color=PALETTE[0], marker="o", markersize=2.5, linewidth=1.4)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(title, loc="left")
        return png(fig)


def stage_times(rows: Sequence[dict[str, Any]]) -> bytes:
    """Seconds of each stage per round, stacked; stages in the order the rounds ran them."""
    stages: list[str] = []
    for row in rows:
        stages += [s for s in row["seconds"] if s not in stages]
    with styled():
        fig, ax = new_figure(6.4, 3.6)
        rounds = [r["round"] for r in rows]
        bottom = np.zeros(len(rows))
        for i, stage in enumerate(stages):
            heights = np.array([r["seconds"].get(stage, 0.0) for r in rows])
            colour = STAGE_COLOURS.get(stage, PALETTE[i % len(PALETTE)])
            ax.bar(rounds, heights, bottom=bottom, width=0.8, color=colour, label=stage, linewidth=0)
            bottom += heights
        ax.set_xlabel("round")
        ax.set_ylabel("seconds")
        ax.set_title("time per round, by stage", loc="left")
        ax.grid(axis="x", visible=False)
        if len(rounds) <= 30:
            ax.set_xticks(rounds)
        if stages:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7.5, handlelength=1)
        return png(fig)


def metric_distributions(columns: dict[str, np.ndarray], pool: np.ndarray, selected: np.ndarray,
                         ranges: dict[str, tuple[float | None, float | None]]) -> bytes:
    """One panel per metric: its histogram over the pool, the selected items' histogram and ticks, and the
    range a filter keeps (outside it shaded)."""
    names = list(columns)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    with styled():
        # Fixed margins: the layout engine would cost more than drawing the panels.
        height = 2.1 * nrows + 0.35
        fig, axes = new_figure(3.0 * ncols, height, layout=None, nrows=nrows, ncols=ncols, squeeze=False)
        fig.subplots_adjust(left=0.03, right=0.98, bottom=0.35 / height, top=1 - 0.62 / height, hspace=0.55,
                            wspace=0.12)
        for ax, name in zip(axes.flat, names, strict=False):
            values = np.asarray(columns[name], dtype=np.float64)
            _distribution(ax, name, values[pool], values[selected], ranges.get(name))
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.02, 1.0), ncols=len(handles))
        return png(fig)


def _distribution(ax: Axes, name: str, pool: np.ndarray, chosen: np.ndarray,
                  kept: tuple[float | None, float | None] | None) -> None:
    from matplotlib.ticker import MaxNLocator

    pool, chosen = pool[np.isfinite(pool)], chosen[np.isfinite(chosen)]
    ax.set_title(name, loc="left", fontsize=9)
    ax.set_yticks([])
    ax.grid(axis="y", visible=False)
    if len(pool) == 0:
        ax.text(0.5, 0.5, "not computed", transform=ax.transAxes, ha="center", color=MUTED)
        return
    low, high = float(pool.min()), float(pool.max())
    if high == low:
        ax.text(0.5, 0.5, f"every item: {low:.4g}", transform=ax.transAxes, ha="center", color=MUTED)
        ax.set_xticks([])
        return
    bins = np.linspace(low, high, 31).tolist()
    ax.hist(pool, bins=bins, density=True, color="#cbd2d9", label="pool")
    if len(chosen):
        ax.hist(chosen, bins=bins, density=True, histtype="step", color=ACCENT, linewidth=1.4,
                label="selected (all rounds)")
        ax.plot(chosen, np.zeros(len(chosen)), "|", color=ACCENT, markersize=6, alpha=0.6,
                transform=ax.get_xaxis_transform())
    if kept is not None:
        left, right = kept
        if left is not None and left > low:
            ax.axvspan(low, left, color="#e12d39", alpha=0.08, linewidth=0, label="removed by a filter")
        if right is not None and right < high:
            ax.axvspan(right, high, color="#e12d39", alpha=0.08, linewidth=0,
                       label=None if left is not None and left > low else "removed by a filter")
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(MaxNLocator(4))


# --- a sweep ----------------------------------------------------------------------------------------------------
def sweep_curves(panels: Sequence[dict[str, Any]], target: float | None, difference: bool = False) -> bytes:
    """One panel per group of configurations: mean test accuracy over seeds against labelled items, a band of one
    standard deviation, random drawn as a dashed baseline. ``difference``: the paired difference from random
    instead (zero is random), one curve per configuration that has a random baseline.

    ``panels``: ``{"title", "series": [{"label", "colour", "random", "points": [(x, mean, std | None)]}]}``.
    """
    ncols = min(2, len(panels)) or 1
    nrows = math.ceil(len(panels) / ncols) or 1
    with styled():
        fig, axes = new_figure(5.2 * ncols, 3.6 * nrows, nrows=nrows, ncols=ncols, squeeze=False)
        for ax, panel in zip(axes.flat, panels, strict=False):
            for series in panel["series"]:
                _band_line(ax, series)
            if difference:
                ax.axhline(0, color=BASELINE, linestyle="--", linewidth=1.1, label="random")
                ax.set_ylabel("accuracy − random (paired by seed)")
            else:
                if target is not None:
                    ax.axhline(target, color=MUTED, linestyle=":", linewidth=1)
                ax.set_ylabel("test accuracy")
            ax.set_xlabel("labelled items")
            ax.set_title(panel["title"], loc="left")
            if panel["series"]:
                ax.legend(loc="lower right" if not difference else "best")
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        return png(fig)


def _band_line(ax: Axes, series: dict[str, Any]) -> None:
    xs = [p[0] for p in series["points"]]
    ys = [p[1] for p in series["points"]]
    sd = [p[2] or 0.0 for p in series["points"]]
    style = {"linestyle": "--", "linewidth": 1.3} if series["random"] else {"linewidth": 1.7}
    ax.plot(xs, ys, color=series["colour"], marker="o", markersize=2.2, label=series["label"], **style)
    if any(sd):
        ax.fill_between(xs, [y - s for y, s in zip(ys, sd, strict=True)], [y + s for y, s in zip(ys, sd, strict=True)],
                        color=series["colour"], alpha=0.15, linewidth=0)


def sweep_summary(rows: Sequence[dict[str, Any]], target: float) -> bytes:
    """Per configuration, area under the learning curve and labels to the target: each seed as a dot, the mean
    as a bar with one standard deviation either side. A seed that never reached the target is drawn at the
    right edge as an open circle."""
    labels = [r["label"] for r in rows]
    y = np.arange(len(rows))[::-1]
    from matplotlib.ticker import MaxNLocator

    with styled():
        fig, (left, right) = new_figure(9.0, 0.9 + 0.36 * len(rows), ncols=2, sharey=True)
        for ax, key, title in ((left, "aulc", "area under the learning curve"),
                               (right, "labels_to_target", f"labels to reach {target:g}")):
            reached = [v for r in rows for v in r[key]["values"] if v is not None]
            edge = max(reached) * 1.08 if reached else 1.0
            for yi, row in zip(y, rows, strict=True):
                values = row[key]["values"]
                colour = row["colour"]
                hits = [v for v in values if v is not None]
                ax.plot(hits, [yi] * len(hits), "o", color=colour, markersize=3.5, alpha=0.55)
                misses = len(values) - len(hits)
                if misses:
                    ax.plot([edge] * misses, [yi] * misses, "o", markerfacecolor="white", color=colour,
                            markersize=4.5)
                mean, std = row[key]["mean"], row[key]["std"]
                if mean is not None:
                    ax.errorbar([mean], [yi], xerr=None if std is None else [[std], [std]], fmt="|",
                                color=colour, markersize=14, markeredgewidth=2, capsize=3, elinewidth=1.3)
            ax.set_title(title, loc="left")
            ax.grid(axis="y", visible=False)
        right.xaxis.set_major_locator(MaxNLocator(integer=True))
        left.set_yticks(y, labels)
        left.set_ylim(-0.7, len(rows) - 0.3)
        return png(fig)

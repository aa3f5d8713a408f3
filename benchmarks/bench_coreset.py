"""k-center greedy (core-set), 100,000 x 128, budget 1,000: ours next to scikit-activeml and small-text.

    python -m benchmarks.bench_coreset [--items 100000] [--dim 128] [--labeled 100] [--budget 1000]
                                      [--small-text-budget 5] [--repeats 3]

All contenders start from the same ``--labeled`` labelled rows, so k-center greedy has no free first choice
and equal selections are expected up to floating-point near-ties. Reported per contender: wall time (best of
``--repeats`` for ours), peak traced memory (numpy allocations, via tracemalloc, in a separate run), the
covering radius max_i min_c ||x_i - x_c|| over the pool, and how many leading picks equal ours.

small-text's ``greedy_coreset`` recomputes the distances to every centre at every step (O(n k^2) in all),
so it runs with a smaller budget (``--small-text-budget``) on the same pool, and its full-budget time is
extrapolated from that per-pick time (a lower bound: its steps get slower as centres accumulate).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from plugins.acquisition.coreset import covering_radius, k_center_greedy


def ours(x: np.ndarray, n_labeled: int, budget: int) -> np.ndarray:
    pool, labeled = x[:-n_labeled], x[-n_labeled:]
    return k_center_greedy(pool, labeled, budget)


def skactiveml(x: np.ndarray, n_labeled: int, budget: int) -> np.ndarray:
    from skactiveml.pool import CoreSet

    y = np.full(len(x), np.nan)
    y[-n_labeled:] = 0
    return np.asarray(CoreSet(random_state=0).query(x, y, batch_size=budget))


def small_text(x: np.ndarray, n_labeled: int, budget: int) -> np.ndarray:
    from small_text.query_strategies.coresets import greedy_coreset

    n = len(x) - n_labeled
    # Its returned positions index the unlabelled rows and are also reused as rows of x, so the unlabelled
    # rows must come first for the two to agree (they do here).
    unlabeled, labeled = np.arange(n), np.arange(n, len(x))
    chosen = greedy_coreset(x, unlabeled, labeled, budget, distance_metric="euclidean", normalized=True)
    return np.asarray(chosen)


def timed(run: Callable, x: np.ndarray, n_labeled: int, budget: int, repeats: int) -> tuple[float, Any]:
    best, chosen = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        chosen = run(x, n_labeled, budget)
        best = min(best, time.perf_counter() - started)
    return best, chosen


def peak_mib(run: Callable, x: np.ndarray, n_labeled: int, budget: int) -> float:
    tracemalloc.start()
    try:
        run(x, n_labeled, budget)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def agreement(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the common leading run of two pick sequences."""
    n = min(len(a), len(b))
    differs = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(differs[0]) if len(differs) else n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--labeled", type=int, default=100)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--small-text-budget", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.items + args.labeled, args.dim))
    pool, labeled = x[: args.items], x[args.items :]
    print(f"pool {args.items:,} x {args.dim}, {args.labeled} labelled, budget {args.budget:,}")
    print(
        f"numpy {np.__version__}, scikit-activeml {version('scikit-activeml')}, "
        f"small-text {version('small-text')}"
    )

    rows = []
    ours_s, ours_chosen = timed(ours, x, args.labeled, args.budget, args.repeats)
    ours_peak = peak_mib(ours, x, args.labeled, args.budget)
    rows.append(("ours k_center_greedy", args.budget, ours_s, ours_peak, ours_chosen))
    try:
        sk_s, sk_chosen = timed(skactiveml, x, args.labeled, args.budget, 1)
        sk_peak = peak_mib(skactiveml, x, args.labeled, args.budget)
        rows.append(("scikit-activeml CoreSet", args.budget, sk_s, sk_peak, sk_chosen))
    except ImportError as exc:
        print(f"scikit-activeml: skipped ({exc})")
    try:
        st_s, st_chosen = timed(small_text, x, args.labeled, args.small_text_budget, 1)
        rows.append(("small-text greedy_coreset", args.small_text_budget, st_s, None, st_chosen))
    except ImportError as exc:
        print(f"small-text: skipped ({exc})")

    print("| contender | picks | seconds | s / pick | peak MiB | covering radius | leading picks as ours |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, picks, seconds, peak, chosen in rows:
        radius = covering_radius(pool, np.concatenate([labeled, pool[chosen]]))
        ours_radius = covering_radius(pool, np.concatenate([labeled, pool[ours_chosen[:picks]]]))
        peak_text = "-" if peak is None else f"{peak:.0f}"
        print(
            f"| {name} | {picks:,} | {seconds:.2f} | {seconds / picks:.4f} | {peak_text} | "
            f"{radius:.4f} (ours at {picks}: {ours_radius:.4f}) | "
            f"{agreement(ours_chosen, chosen)} / {picks} |"
        )
    if args.small_text_budget < args.budget and any(r[0].startswith("small-text") for r in rows):
        per_pick = rows[-1][2] / rows[-1][1]
        print(f"small-text extrapolated to {args.budget:,} picks: >= {per_pick * args.budget / 60:.0f} min")


if __name__ == "__main__":
    main()

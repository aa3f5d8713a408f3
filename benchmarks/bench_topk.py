"""Rank a 1,000,000-item, 10-class pool by entropy and take the top 1,000: ours next to modAL's and baal's.

    python -m benchmarks.bench_topk [--items 1000000] [--classes 10] [--budget 1000] [--repeats 5]

Every contender gets the same precomputed probability array, so only scoring plus selection is timed. Times
are the best of ``--repeats`` runs (the least disturbed by other load on the machine) and the median.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import time
from collections.abc import Callable

import numpy as np

from plugins.acquisition.uncertainty import entropy
from plugins.selection.policies import topk


class FixedProbabilities:
    """A stand-in estimator whose predict_proba hands back the probabilities it was given."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def predict_proba(self, x: np.ndarray, **_: object) -> np.ndarray:
        return self.probs


def ours(probs: np.ndarray, budget: int) -> np.ndarray:
    return topk(entropy(probs), budget)


def modal(probs: np.ndarray, budget: int) -> np.ndarray:
    from modAL.uncertainty import entropy_sampling

    chosen, _ = entropy_sampling(FixedProbabilities(probs), probs, n_instances=budget)
    return np.asarray(chosen)


def baal(probs: np.ndarray, budget: int) -> np.ndarray:
    from baal.active.heuristics import Entropy

    return np.asarray(Entropy()(probs))[:budget]


def timed(run: Callable[[np.ndarray, int], np.ndarray], probs: np.ndarray, budget: int, repeats: int):
    seconds, chosen = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        chosen = run(probs, budget)
        seconds.append(time.perf_counter() - started)
    return min(seconds), statistics.median(seconds), chosen


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    probs = np.random.default_rng(0).dirichlet(np.ones(args.classes), size=args.items)
    print(f"pool {args.items:,} x {args.classes} classes, top {args.budget:,}, best/median of {args.repeats}")
    print(f"numpy {np.__version__}, modAL-python {version('modAL-python')}, baal {version('baal')}")
    contenders = {
        "ours (entropy + topk)": ours,
        "modAL entropy_sampling": modal,
        "baal heuristics.Entropy": baal,
    }
    results = {}
    for name, run in contenders.items():
        try:
            results[name] = timed(run, probs, args.budget, args.repeats)
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")
    reference = set(results["ours (entropy + topk)"][2].tolist())
    base = results["ours (entropy + topk)"][0]
    print("| contender | best s | median s | best / ours | same top set |")
    print("|---|---:|---:|---:|---|")
    for name, (best, median, chosen) in results.items():
        same = set(np.asarray(chosen).tolist()) == reference
        print(f"| {name} | {best:.3f} | {median:.3f} | {best / base:.1f}x | {same} |")


if __name__ == "__main__":
    main()

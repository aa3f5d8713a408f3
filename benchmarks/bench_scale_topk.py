"""Top 1,000 of a 1,000,000 x 10 float32 probability pool by entropy, margin and least confidence.

    python -m benchmarks.bench_scale_topk [--items 1000000] [--classes 10] [--budget 1000] [--repeats 7]

Contenders, all given the same precomputed float32 array, all timed in this process in turn:
- ours: ``plugins.acquisition.uncertainty`` + ``plugins.selection.policies.topk``;
- the runner's chunked path (``runner.acquire.score_candidates`` with ``selection.chunk_size`` 8192, which adds
  the score contract check) + topk;
- a plain numpy reference: the score in one expression, then ``argpartition`` and a sort of the top k;
- modAL (``entropy_sampling``, ``margin_sampling``, ``uncertainty_sampling`` with a stub estimator) and baal
  (``heuristics.Entropy``, ``Margin``, ``Certainty``), where installed (``pip install -e ".[bench]"``).
Time: best and median of ``--repeats``. Memory: the peak that tracemalloc sees numpy allocate during one call
(the input itself is not counted). Every contender's top set is compared with ours.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from plugins.acquisition import uncertainty
from plugins.selection.policies import topk


class FixedProbabilities:
    """A stand-in estimator whose predict_proba hands back the probabilities it was given."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def predict_proba(self, x: np.ndarray, **_: object) -> np.ndarray:
        return self.probs


def reference_scores(name: str, p: np.ndarray) -> np.ndarray:
    if name == "entropy":
        return -(p * np.log(p)).sum(axis=1)  # the pool has no zeros
    if name == "margin":
        top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        return top2[:, 0] - top2[:, 1]
    return 1.0 - p.max(axis=1)


def reference(name: str, p: np.ndarray, budget: int) -> np.ndarray:
    scores = reference_scores(name, p)
    top = np.argpartition(scores, len(scores) - budget)[-budget:]
    return top[np.argsort(-scores[top], kind="stable")]


def ours(name: str, p: np.ndarray, budget: int) -> np.ndarray:
    return topk(getattr(uncertainty, name)(p), budget)


def runner_path(name: str, p: np.ndarray, budget: int) -> np.ndarray:
    from runner.acquire import Acquisition, InputProvider, score_candidates

    function = getattr(uncertainty, name)
    acquisition = Acquisition(name, function, ("probs",), None)
    provider = InputProvider(np.arange(len(p)), {"probs": lambda rows: p[rows[0] : rows[-1] + 1]}, {})
    scores, _ = score_candidates(acquisition, provider, 8192)
    return topk(scores, budget)


def modal(name: str, p: np.ndarray, budget: int) -> np.ndarray:
    from modAL import uncertainty as modal_uncertainty

    function = {"entropy": modal_uncertainty.entropy_sampling, "margin": modal_uncertainty.margin_sampling,
                "least_confidence": modal_uncertainty.uncertainty_sampling}[name]
    chosen, _ = function(FixedProbabilities(p), p, n_instances=budget)
    return np.asarray(chosen)


def baal(name: str, p: np.ndarray, budget: int) -> np.ndarray:
    from baal.active import heuristics

    heuristic = {"entropy": heuristics.Entropy, "margin": heuristics.Margin,
                 "least_confidence": heuristics.Certainty}[name]()
    return np.asarray(heuristic(p))[:budget]


def measure(run: Callable[[str, np.ndarray, int], np.ndarray], name: str, p: np.ndarray, budget: int,
            repeats: int) -> tuple[float, float, float, np.ndarray]:
    seconds = []
    chosen = run(name, p, budget)  # warm-up (imports)
    for _ in range(repeats):
        started = time.perf_counter()
        chosen = run(name, p, budget)
        seconds.append(time.perf_counter() - started)
    tracemalloc.start()
    run(name, p, budget)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return min(seconds), statistics.median(seconds), peak, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    p = np.random.default_rng(0).dirichlet(np.ones(args.classes), size=args.items).astype(np.float32)
    print(f"pool {args.items:,} x {args.classes} float32 ({p.nbytes / 2**20:.0f} MiB), top {args.budget:,}, "
          f"best/median of {args.repeats}")
    contenders = {"ours": ours, "runner chunked": runner_path, "numpy reference": reference, "modAL": modal,
                  "baal": baal}
    print("| score | contender | best s | median s | best / numpy | best / ours | peak MiB | same top set |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for name in ("entropy", "margin", "least_confidence"):
        results = {}
        for label, run in contenders.items():
            try:
                results[label] = measure(run, name, p, args.budget, args.repeats)
            except ImportError as exc:
                print(f"| {name} | {label} | skipped ({exc}) | | | | | |")
        mine = set(results["ours"][3].tolist())
        for label, (best, median, peak, chosen) in results.items():
            same = len(mine & set(np.asarray(chosen).tolist())) / len(mine)
            print(f"| {name} | {label} | {best:.4f} | {median:.4f} | {best / results['numpy reference'][0]:.2f} | "
                  f"{best / results['ours'][0]:.2f} | {peak:.1f} | {same:.3f} |")


if __name__ == "__main__":
    main()

"""Batch strategies at 100,000 candidates, budget 1,000: time and extra memory of each, in one process.

    python -m benchmarks.bench_scale_strategies [--candidates 100000] [--budget 1000] [--cache outputs/cache]
        [--only typiclust,badge,cluster_margin,probcover,coreset]

Data: the shifted Fashion-MNIST pool (``project=shifted_fashion_mnist``, seed 0) of candidates + 10,000 test
items, embedded by PixelPCA (50 components, the default embedder), probabilities from logistic regression fitted
on 20 class-balanced labelled items (the default round-0 model), which are also the labelled embeddings. Each
strategy is called as the score stage calls it, with its arguments from ``conf/acquisition/`` and the run's
neighbour search (``compute.neighbours``
defaults: exact up to 20,000 rows, IVF above), its index built inside the timed call. Extra memory is the
process's peak resident set during the call minus its resident set just before (Linux ``VmHWM`` reset through
``/proc/self/clear_refs``), so faiss's own allocations count too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from plugins.acquisition import badge, cluster_margin, coreset, probcover, typiclust
from plugins.embedders.pixels import PixelPCA
from plugins.neighbours import NeighbourSearch, NeighbourSettings
from plugins.selection.initial import class_balanced_sample
from plugins.sources.shifted import shifted_fashion_mnist
from runner.compute import PeakMemory


def resident_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def configured(name: str) -> dict:
    """The arguments ``conf/acquisition/NAME.yaml`` gives the strategy (what a run passes)."""
    import yaml

    node = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "acquisition" / f"{name}.yaml").read_text())
    function = node["function"]
    while isinstance(function.get("function"), dict):  # a wrapper (plugins.acquisition.spaces): its inner function
        function = function["function"]
    return {k: v for k, v in function.items() if k not in ("_target_", "_partial_")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--cache", default="outputs/cache")
    parser.add_argument("--only", default="typiclust,badge,cluster_margin,probcover,coreset,cluster_margin_on_probs,"
                                              "coreset_on_probs")
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression

    data = shifted_fashion_mnist(args.candidates + 10_000, seed=0, cache_dir=args.cache, test_size=10_000)
    pool = np.arange(args.candidates)
    embeddings = PixelPCA(50, stream_above=20_000).fit_transform(data.images)
    labeled = class_balanced_sample(pool, data.labels[pool], 20, np.random.default_rng(0))
    model = LogisticRegression(max_iter=200).fit(data.images[labeled].reshape(20, -1).astype(np.float64),
                                                 data.labels[labeled])
    candidates = np.setdiff1d(pool, labeled)
    probs = np.concatenate([model.predict_proba(data.images[candidates[s : s + 8192]].reshape(-1, 784)
                                                .astype(np.float64)) for s in range(0, len(candidates), 8192)])
    x, known = embeddings[candidates], embeddings[labeled]
    known_probs = model.predict_proba(data.images[labeled].reshape(20, -1).astype(np.float64))
    print(f"{len(candidates):,} candidates x {x.shape[1]} (PixelPCA), 20 labelled, budget {args.budget:,}")
    settings = {name: configured(name) for name in ("typiclust", "badge", "cluster_margin", "probcover")}
    calls = {
        "typiclust": lambda rng, search: typiclust.typiclust(x, known, args.budget, rng, **settings["typiclust"]),
        "badge": lambda rng, search: badge.badge(probs, x, args.budget, rng, **settings["badge"]),
        "cluster_margin": lambda rng, search: cluster_margin.cluster_margin(probs, x, args.budget, rng,
                                                                            **settings["cluster_margin"]),
        "probcover": lambda rng, search: probcover.probcover(x, known, args.budget, 10, rng, neighbours=search,
                                                             **settings["probcover"]),
        "coreset": lambda rng, search: coreset.k_center_greedy(x, known, args.budget),
        # As shipped (conf/acquisition/): both in the model's class-probability space.
        "cluster_margin_on_probs": lambda rng, search: cluster_margin.cluster_margin(
            probs, probs, args.budget, rng, **settings["cluster_margin"]),
        "coreset_on_probs": lambda rng, search: coreset.k_center_greedy(probs, known_probs, args.budget),
    }
    memory = PeakMemory()
    print("| strategy | seconds | extra MiB | picks |")
    print("|---|---:|---:|---:|")
    for name in args.only.split(","):
        search = NeighbourSearch(NeighbourSettings(approximate_above=20_000, probes=8, recall_sample=500))
        before = resident_mib()
        memory.start()
        started = time.perf_counter()
        chosen = calls[name](np.random.default_rng(0), search)
        seconds = time.perf_counter() - started
        extra = memory.stop() - before
        print(f"| {name} | {seconds:.2f} | {extra:.0f} | {len(np.unique(chosen)):,} |", flush=True)


if __name__ == "__main__":
    main()

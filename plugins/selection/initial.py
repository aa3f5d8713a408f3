"""How a simulated run starts: which items are held out for testing, and which are labelled before round 0."""

from __future__ import annotations

import numpy as np

from plugins.arrays import Array
from plugins.errors import InputError


def split_items(labels: Array, test_size: int, rng: np.random.Generator) -> Array:
    """``"pool"``/``"test"`` per item: a seeded split of ``test_size`` test items, stratified by label when every
    item has one."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    n = len(labels)
    stratify = labels if (labels >= 0).all() else None
    _, test = train_test_split(
        np.arange(n), test_size=int(test_size), stratify=stratify, random_state=int(rng.integers(2**31 - 1))
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

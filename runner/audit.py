"""Out-of-fold class probabilities of the labelled items: each item's row comes from a model that never saw it.

scikit-learn's ``cross_val_predict`` does the folds; every fold trains a fresh model of the run's own kind (the
same factory and seed as a round's model), so label-error detection judges the labels by the very model the
loop trains, without letting it memorise the label it is judging.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold, cross_val_predict


class FreshModel(ClassifierMixin, BaseEstimator):  # type: ignore[misc]  # scikit-learn ships no types
    """scikit-learn's face of a runner model: ``make()`` builds an unfitted one at every ``fit``."""

    def __init__(self, make: Callable[[], Any] | None = None) -> None:
        self.make = make

    def fit(self, X: np.ndarray, y: np.ndarray) -> FreshModel:
        if self.make is None:
            raise ValueError("FreshModel needs a model factory")
        self.classes_ = np.unique(y)
        self.model_ = self.make()
        self.model_.fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        # A runner model has a column for every class of the run; keep those this fold trained on, in order.
        return np.asarray(self.model_.predict_proba(X))[:, self.classes_]


def out_of_fold_probs(make: Callable[[], Any], images: np.ndarray, labels: np.ndarray, folds: int,
                      seed: int) -> np.ndarray:
    """(n, k) probabilities over the classes ``0..k-1`` of ``labels``, by stratified ``folds``-fold
    cross-validation (fewer folds when the largest class has fewer items), shuffled with ``seed``."""
    labels = np.asarray(labels, dtype=np.int64)
    n_splits = int(min(folds, np.bincount(labels).max()))
    cv = StratifiedKFold(n_splits=max(n_splits, 2), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Classes rarer than the folds leave some folds without them; their column is 0 there, as documented.
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        warnings.filterwarnings("ignore", message=".*Number of classes in training fold.*")
        return np.asarray(cross_val_predict(FreshModel(make), images, labels, cv=cv, method="predict_proba"))

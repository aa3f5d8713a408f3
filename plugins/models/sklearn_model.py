"""Any scikit-learn classifier as a runner model."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from plugins.errors import InputError


class SklearnClassifier:
    """Wraps an unfitted scikit-learn estimator that has ``predict_proba``.

    Images are flattened to one row per item and fitted in float64, so that results carry over between CPUs
    (see ``_float64_rows``). Probabilities always have ``n_classes`` columns, in class-index
    order, even when the labelled set lacks some classes (their columns are 0).
    """

    def __init__(self, estimator, n_classes: int, random_state: int | None = None) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise InputError(
                f"model.estimator: {type(estimator).__name__} has no predict_proba (with these arguments); "
                "pick a probabilistic classifier"
            )
        self.estimator = estimator
        self.n_classes = n_classes
        self.random_state = random_state
        self.fitted_ = None
        self.constant_class_: int | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> SklearnClassifier:
        y = np.asarray(y)
        present = np.unique(y)
        if len(present) == 1:
            # scikit-learn refuses a single class; the only honest prediction is that class.
            self.constant_class_ = int(present[0])
            return self
        estimator = clone(self.estimator)
        if self.random_state is not None and "random_state" in estimator.get_params():
            estimator.set_params(random_state=self.random_state)
        self.fitted_ = estimator.fit(_float64_rows(X), y)
        self.constant_class_ = None
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        n = len(X)
        probs = np.zeros((n, self.n_classes), dtype=np.float64)
        if self.constant_class_ is not None:
            probs[:, self.constant_class_] = 1.0
            return probs
        if self.fitted_ is None:
            raise RuntimeError("predict_proba called before fit")
        probs[:, self.fitted_.classes_.astype(np.int64)] = self.fitted_.predict_proba(_float64_rows(X))
        return probs

    def embed(self, X: np.ndarray) -> np.ndarray:
        """The raw features the estimator sees (flattened pixels)."""
        return _rows(X)


def _rows(X: np.ndarray) -> np.ndarray:
    return np.asarray(X).reshape(len(X), -1)


def _float64_rows(X: np.ndarray) -> np.ndarray:
    """Rows in float64 for fitting and predicting.

    Several estimators (LogisticRegression among them) keep float32 input in float32, and an iterative solver
    fed float32 gradients takes a path that depends on the CPU's BLAS kernels: on MNIST, probabilities from
    two kernels differed by up to 2e-2 in float32 against 2e-8 in float64 (docs/reproducibility.md).
    """
    return np.asarray(X, dtype=np.float64).reshape(len(X), -1)

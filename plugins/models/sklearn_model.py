"""Any classifier with scikit-learn's ``fit`` / ``predict_proba`` / ``predict`` (scikit-learn, xgboost, lightgbm)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import clone

from plugins.arrays import Array
from plugins.errors import InputError
from plugins.models.features import float64_rows, rows


class SklearnClassifier:
    """Wraps an unfitted estimator that has ``predict_proba``.

    Images are flattened to one row per item and fitted in float64, so that results carry over between CPUs
    (see ``plugins.models.features.float64_rows``). The estimator is fitted on the classes present, numbered 0..k-1
    (libraries such as xgboost refuse gaps in the class numbers); probabilities always have ``n_classes`` columns,
    in class-index order, even when the labelled set lacks some classes (their columns are 0). ``predict`` is the
    estimator's own decision, which for some estimators (an SVC's Platt-scaled probabilities on few labels) is
    not the argmax of its probabilities.
    """

    def __init__(self, estimator: Any, n_classes: int, random_state: int | None = None) -> None:
        # hasattr, not isinstance(estimator, plugins.protocols.Model): scikit-learn hides predict_proba behind a
        # descriptor that raises when the settings rule it out (SVC without probability=True), which hasattr
        # sees and a protocol check on Python 3.12+ (a static look-up) does not.
        if not hasattr(estimator, "predict_proba"):
            raise InputError(
                f"model.estimator: {type(estimator).__name__} has no predict_proba (with these arguments); "
                "pick a probabilistic classifier"
            )
        self.estimator = estimator
        self.n_classes = n_classes
        self.random_state = random_state
        self.fitted_: Any = None
        self.classes_: Array = np.zeros(0, dtype=np.int64)

    def fit(self, X: Array, y: Array) -> SklearnClassifier:
        self.classes_, encoded = np.unique(np.asarray(y, dtype=np.int64), return_inverse=True)
        if len(self.classes_) == 1:
            # scikit-learn refuses a single class; the only honest prediction is that class.
            self.fitted_ = None
            return self
        estimator = clone(self.estimator)
        if self.random_state is not None and "random_state" in estimator.get_params():
            estimator.set_params(random_state=self.random_state)
        with warnings.catch_warnings():
            # conf/model/svc.yaml keeps SVC(probability=True) on purpose (its replacement, CalibratedClassifierCV,
            # cannot fit a class with a single label, which the first rounds of a loop have), so scikit-learn
            # 1.9's deprecation notice would only repeat itself every round.
            warnings.filterwarnings("ignore", message="The `probability` parameter was deprecated",
                                    category=FutureWarning)
            self.fitted_ = estimator.fit(float64_rows(X), encoded)
        return self

    def predict_proba(self, X: Array) -> Array:
        probs = np.zeros((len(X), self.n_classes), dtype=np.float64)
        if len(self.classes_) == 1:
            probs[:, self.classes_[0]] = 1.0
            return probs
        if self.fitted_ is None:
            raise RuntimeError("predict_proba called before fit")
        probs[:, self.classes_[np.asarray(self.fitted_.classes_, dtype=np.int64)]] = self.fitted_.predict_proba(
            float64_rows(X)
        )
        return probs

    def predict(self, X: Array) -> Array:
        """Class indices as the estimator decides them."""
        if len(self.classes_) == 1:
            return np.full(len(X), self.classes_[0], dtype=np.int64)
        if self.fitted_ is None:
            raise RuntimeError("predict called before fit")
        return np.asarray(self.classes_[np.asarray(self.fitted_.predict(float64_rows(X)), dtype=np.int64).reshape(-1)])

    def embed(self, X: Array) -> Array:
        """The raw features the estimator sees (flattened pixels)."""
        return rows(X)

"""A model that learns from the unlabelled pool too: label spreading over a nearest-neighbour graph.

Every round, the labelled and the unlabelled pool images are reduced by PCA (fitted on all of them, so the
unlabelled items shape the axes too) and joined in a k-nearest-neighbour graph; scikit-learn's
``LabelSpreading`` spreads the known labels along it (Zhou et al. 2004). An item is then predicted from its
neighbours among the pool, labelled or not, so a few labels per cluster of look-alike images label the cluster.

The runner hands the pool to any model whose ``fit`` takes ``unlabeled``; with none it is plain k-NN label
spreading over the labelled items.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.semi_supervised import LabelSpreading

from plugins.arrays import Array
from plugins.embedders.pixels import pca_solver
from plugins.models.features import float64_rows


class LabelSpreadingClassifier:
    """``n_components``: PCA dimensions; ``n_neighbors``: the graph's k; ``alpha`` in (0, 1): how much of its
    neighbours' labels an item takes each step (0 keeps the given labels fixed)."""

    def __init__(self, n_classes: int, random_state: int | None = None, n_components: int = 50,
                 n_neighbors: int = 10, alpha: float = 0.2, max_iter: int = 100) -> None:
        if int(n_components) < 1 or int(n_neighbors) < 1:
            raise ValueError("n_components and n_neighbors must be at least 1")
        if not 0.0 < float(alpha) < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.n_classes = n_classes
        self.random_state = 0 if random_state is None else int(random_state)
        self.n_components = int(n_components)
        self.n_neighbors = int(n_neighbors)
        self.alpha = float(alpha)
        self.max_iter = int(max_iter)
        self.pca_: PCA | None = None
        self.spreading_: LabelSpreading | None = None

    def fit(self, X: Array, y: Array, unlabeled: Array | None = None) -> LabelSpreadingClassifier:
        labelled = float64_rows(X)
        pool = float64_rows(unlabeled) if unlabeled is not None and len(unlabeled) else labelled[:0]
        every = np.concatenate([labelled, pool])
        d = min(self.n_components, every.shape[0], every.shape[1])
        self.pca_ = PCA(n_components=d, svd_solver=pca_solver(*every.shape), random_state=self.random_state)
        points = self.pca_.fit_transform(every)
        targets = np.concatenate([np.asarray(y, dtype=np.int64), np.full(len(pool), -1)])
        k = max(1, min(self.n_neighbors, len(points) - 1))
        self.spreading_ = LabelSpreading(kernel="knn", n_neighbors=k, alpha=self.alpha, max_iter=self.max_iter)
        self.spreading_.fit(points, targets)
        # An item no label reached within max_iter steps has a 0/0 distribution; it carries no label.
        np.nan_to_num(self.spreading_.label_distributions_, copy=False, nan=0.0)
        return self

    def predict_proba(self, X: Array) -> Array:
        if self.pca_ is None or self.spreading_ is None:
            raise RuntimeError("predict_proba called before fit")
        with np.errstate(invalid="ignore", divide="ignore"):
            found = self.spreading_.predict_proba(self.pca_.transform(float64_rows(X)))
        probs = np.zeros((len(X), self.n_classes))
        probs[:, self.spreading_.classes_.astype(np.int64)] = np.nan_to_num(found, nan=0.0)
        # An item whose neighbours carry no label at all: nothing is known, every class is as likely.
        empty = probs.sum(axis=1) <= 0
        probs[empty] = 1.0 / self.n_classes
        return np.asarray(probs / probs.sum(axis=1, keepdims=True))

    def embed(self, X: Array) -> Array:
        """The PCA coordinates the graph is built on."""
        if self.pca_ is None:
            raise RuntimeError("embed called before fit")
        return np.asarray(self.pca_.transform(float64_rows(X)))

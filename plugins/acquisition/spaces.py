"""Run an embedding strategy in the model's own output space: its class probabilities.

Core-set and Cluster-Margin measure distances between items, and how well they work is the quality of those
distances. Pixel PCA puts a hard-to-read 4 next to a 9 only if their pixels agree; the model's class
probabilities put items together when the model sees them alike, which is the representation the strategy's
paper meant (the network's own layer). Every model has probabilities, so this works with any of them; for a
network with a learned layer, ``embedder=model`` with the plain strategy uses that layer instead.

On MNIST with logistic regression (benchmarks/label_efficiency.md), k-center greedy on 50 PCA components of the
pixels is far below random (it labels outliers) while on the probabilities it is above it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plugins.acquisition.combine import Component, in_protocol_order, metric_names

# What the wrapped function is given in place of the embeddings it asks for.
IN_PLACE_OF = {"embeddings": "probs", "labeled_embeddings": "labeled_probs"}


class InPredictionSpace:
    """``function``: an acquisition function that takes ``embeddings`` (and maybe ``labeled_embeddings``);
    it is called with the class probabilities of the candidates (and of the labelled items) in their place."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.wrapped = Component.of("function", function)
        if not set(IN_PLACE_OF) & set(self.wrapped.needs):
            raise ValueError("function takes no embeddings, so there is nothing to put in prediction space")

    @property
    def inputs(self) -> tuple[str, ...]:
        return in_protocol_order(IN_PLACE_OF.get(n, n) for n in self.wrapped.needs)

    @property
    def metric_names(self) -> list[str]:
        return metric_names([self.wrapped])

    def __call__(self, **inputs: Any) -> Any:
        return self.wrapped(inputs, read_from=IN_PLACE_OF)

"""How an acquisition function says what it needs: the names of its parameters.

The runner reads a function's required parameters and passes each by name:

- ``probs``: class probabilities of the candidates, (n, C)
- ``samples``: MC-dropout samples of those probabilities, (T, n, C), T = ``acquisition.mc_samples``
- ``embeddings``: embeddings of the candidates, (n, d); ``labeled_embeddings``: of the labelled items, (m, d)
- ``metrics``: the computed metric columns of the candidates, a mapping from metric name to (n,)
- ``n_classes``, ``n_items`` (number of candidates), ``rng`` (the stage's seeded numpy Generator)
- ``neighbours``: the run's shared neighbour search (``plugins.neighbours.NeighbourSearch``); an index asked of
  it for the same vectors is built once and reused
- ``budget``: items to select. A function that takes it is a *batch strategy* and returns the positions to label,
  best first; any other returns one score per candidate, higher = label first.

A callable object may instead list its needs in an ``inputs`` attribute (a combination of other functions does:
see ``plugins.acquisition.weighted``), and name the metric columns it reads in ``metric_names``. Parameters with a
default are configuration, set in YAML, never inputs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

INPUTS = {
    "probs": "class probabilities of the candidates, (n, C)",
    "samples": "MC-dropout samples, (T, n, C)",
    "embeddings": "embeddings of the candidates, (n, d)",
    "labeled_embeddings": "embeddings of the labelled items, (m, d)",
    "metrics": "metric columns of the candidates, by name",
    "n_classes": "number of classes",
    "n_items": "number of candidates",
    "rng": "the stage's seeded numpy Generator",
    "neighbours": "the run's shared neighbour search",
    "budget": "items to select (makes the function a batch strategy)",
}
MODEL_INPUTS = frozenset({"probs", "samples"})
EMBEDDING_INPUTS = frozenset({"embeddings", "labeled_embeddings"})
# Functions needing only these can see one chunk of the pool at a time, so memory stays bounded on large pools.
CHUNKABLE = frozenset({"probs", "samples", "n_items", "rng"})
# Chunkable functions that draw nothing can also split the pool into shards computed anywhere (Ray tasks).
SHARDABLE = CHUNKABLE - {"rng"}


def declared_inputs(function: Callable, known: frozenset[str] | dict = frozenset(INPUTS)) -> tuple[str, ...]:
    """The inputs ``function`` asks for, in its parameter order; ValueError naming one it cannot be given."""
    listed = getattr(function, "inputs", None)
    if listed is not None:
        names = tuple(listed)
        unknown = [n for n in names if n not in known]
    else:
        try:
            params = inspect.signature(function).parameters
        except (TypeError, ValueError) as exc:  # e.g. a partial with arguments the function does not take
            raise ValueError(str(exc)) from None
        required = [
            n for n, p in params.items()
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        unknown = [n for n in required if n not in known]
        names = tuple(n for n in params if n in known)
    if unknown:
        raise ValueError(f"needs '{unknown[0]}', which the runner cannot give (it gives: {', '.join(known)})")
    return names

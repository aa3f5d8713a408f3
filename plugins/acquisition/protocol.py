"""How an acquisition function says what it needs: the names of its parameters.

The runner reads a function's required parameters and passes each by name:

- ``probs``: class probabilities of the candidates, (n, C)
- ``samples``: MC-dropout samples of those probabilities, (T, n, C), T = ``acquisition.mc_samples``
- ``embeddings``: embeddings of the candidates, (n, d); ``labeled_embeddings``: of the labelled items, (m, d)
- ``labels``: the labels of the labelled items, (m,); ``labeled_probs``: the current model's class probabilities
  of the labelled items, (m, C). Both in the row order of ``labeled_embeddings``.
- ``features``: what the round's model is given for the candidates (its own input, each item flattened to one row:
  pixels, or embedder vectors for a model trained on embeddings), (n, d) float32
- ``predict_proba``: the round's model as a function of such rows, (m, d) -> class probabilities (m, C), checked
  as ``probs`` are and given to the model a chunk at a time; for strategies that perturb the model's input
- ``metrics``: the computed metric columns of the candidates, a mapping from metric name to (n,)
- ``n_classes``, ``n_items`` (number of candidates), ``rng`` (the stage's seeded numpy Generator)
- ``neighbours``: the run's shared neighbour search (``plugins.neighbours.NeighbourSearch``); an index asked of
  it for the same vectors is built once and reused
- ``round``: the round being scored (0 first); ``n_labeled``: how many items are labelled now
- ``history``: the rounds before this one, oldest first, as read-only :class:`PastRound` records
- ``budget``: items to select. A function that takes it is a *batch strategy* and returns the positions to label,
  best first; any other returns one score per candidate, higher = label first.

A callable object may instead list its needs in an ``inputs`` attribute (a combination of other functions does:
see ``plugins.acquisition.weighted``), and name the metric columns it reads in ``metric_names``. One whose needs
change from round to round (a schedule: ``plugins.acquisition.schedule``) also defines
``inputs_for(round, n_labeled)``, the part of ``inputs`` it needs in that round; only those are computed, and it is
a batch strategy in the rounds where they include ``budget``. Parameters with a default are configuration, set in
YAML, never inputs.

A function that wants to remember something about a round returns a :class:`Decision`: its answer (scores or
positions) and a small JSON record. The runner stores the record with the round (it shows in ``metrics.jsonl``
under ``acquisition``) and hands it back in ``history``. That is the only memory an acquisition has between
rounds: everything it knows comes from the store, so a resumed run decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from plugins.arrays import Array
from plugins.protocols import ListsInputs, NarrowsInputs

INPUTS = {
    "probs": "class probabilities of the candidates, (n, C)",
    "samples": "MC-dropout samples, (T, n, C)",
    "embeddings": "embeddings of the candidates, (n, d)",
    "labeled_embeddings": "embeddings of the labelled items, (m, d)",
    "labels": "labels of the labelled items, (m,)",
    "labeled_probs": "class probabilities of the labelled items, (m, C)",
    "features": "the model's input for the candidates, one flattened row each, (n, d) float32",
    "predict_proba": "the round's model on rows like features': (m, d) -> (m, C) class probabilities",
    "metrics": "metric columns of the candidates, by name",
    "n_classes": "number of classes",
    "n_items": "number of candidates",
    "rng": "the stage's seeded numpy Generator",
    "neighbours": "the run's shared neighbour search",
    "round": "the round being scored",
    "n_labeled": "number of labelled items",
    "history": "the earlier rounds (PastRound records)",
    "budget": "items to select (makes the function a batch strategy)",
}
MODEL_INPUTS = frozenset({"probs", "samples", "labeled_probs", "predict_proba"})
EMBEDDING_INPUTS = frozenset({"embeddings", "labeled_embeddings"})
# Functions needing only these can see one chunk of the pool at a time, so memory stays bounded on large pools.
CHUNKABLE = frozenset({"probs", "samples", "n_items", "rng", "round", "n_labeled"})
# Chunkable functions that draw nothing and need nothing of the round can also split the pool into shards
# computed anywhere (Ray tasks).
SHARDABLE = CHUNKABLE - {"rng", "round", "n_labeled"}


@dataclass(frozen=True)
class PastRound:
    """What an acquisition function may know of an earlier round.

    ``labeled_rows``: where the items that round selected sit in this round's ``labels`` and ``labeled_probs``
    (only those labelled by now). ``test_accuracy``: the accuracy on the held-out items of the model that made
    that round's choice; ``accuracy_after``: of the next round's model, trained once the choice was labelled
    (None when nothing is held out, or not yet). A strategy that steers by them sees the split the run is
    evaluated on. ``record``: what the acquisition returned in its :class:`Decision` that round (empty if none).
    """

    round: int
    n_labeled: int
    test_accuracy: float | None
    accuracy_after: float | None
    labeled_rows: Array
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """An answer (scores, or a batch strategy's positions) with a JSON-serialisable record of the round."""

    answer: Array
    record: Mapping[str, Any]


def declared_inputs(function: Callable[..., Any], known: Collection[str] = frozenset(INPUTS)) -> tuple[str, ...]:
    """The inputs ``function`` asks for, in its parameter order; ValueError naming one it cannot be given."""
    listed = function.inputs if isinstance(function, ListsInputs) else None
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


def inputs_at(function: Callable[..., Any], declared: tuple[str, ...], round_: int, n_labeled: int) -> tuple[str, ...]:
    """What ``function`` needs in round ``round_`` with ``n_labeled`` labels: its ``inputs_for`` answer when it
    has one (checked to be part of ``declared``), else everything it declared."""
    if not isinstance(function, NarrowsInputs):
        return declared
    needed = tuple(function.inputs_for(round_, n_labeled))
    extra = [n for n in needed if n not in declared]
    if extra:
        raise ValueError(f"inputs_for asks for '{extra[0]}', which its inputs do not list")
    return needed


def unpack(value: Any) -> tuple[Any, Mapping[str, Any]]:
    """``(answer, record)`` of what an acquisition function returned; a bare answer has an empty record."""
    if isinstance(value, Decision):
        return value.answer, dict(value.record)
    return value, {}

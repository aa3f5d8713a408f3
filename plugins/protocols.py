"""What the runner and the plugins expect of one another, as :class:`typing.Protocol` classes.

A plugin is any object with the right methods; nothing here needs to be inherited. The required parts of a
contract (:class:`Model`, :class:`Embedder`, :class:`CandidateScreen`) are plain protocols, for type checkers.
The optional capabilities the runner looks for at run time (a model's ``predict``, its MC samples, its own
embedding, ...) are ``runtime_checkable``, so ``isinstance(model, SamplesPredictions)`` is the check.

An ``isinstance`` check against a runtime protocol only sees that the members exist, not their signatures, so
two capabilities that differ by a parameter (a ``fit`` that takes ``unlabeled``, a ``fit_transform`` that takes
``map_blocks``) come with a function that reads the signature: :func:`learns_from_pool`, :func:`spreads_blocks`.
Members must be defined on the class or set on the instance: from Python 3.12 on, ``isinstance`` against a
protocol looks attributes up statically and no longer sees what a ``__getattr__`` would hand out.

Arrays are numpy arrays (:data:`Array`): n is the number of items asked about, C the number of classes, d the
embedding width.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from plugins.arrays import Array

if TYPE_CHECKING:
    from plugins.neighbours import NeighbourSearch


# map_blocks(function, blocks) -> [function(block) for block in blocks], in order, run wherever the caller likes.
BlockMap = Callable[[Callable[[slice], Any], Sequence[slice]], list[Any]]


# --- models ---------------------------------------------------------------------------------------------------


class Model(Protocol):
    """A classifier the runner trains every round.

    ``fit(X, y)``: X the labelled items' images (n, H, W) or (n, H, W, ch), y their class indices (n,) in
    [0, C); it returns the fitted model (itself). ``predict_proba(X)``: (n, C) float class probabilities, each row
    summing to 1, columns in class-index order even for classes the labelled set lacks (their columns 0).
    """

    def fit(self, X: Array, y: Array) -> Any: ...

    def predict_proba(self, X: Array) -> Array: ...


@runtime_checkable
class PredictsClasses(Protocol):
    """A model with its own decision: ``predict(X)`` -> (n,) integer class indices in [0, C), which need not be
    the argmax of its probabilities (an SVC's Platt scaling). Without it the runner takes the most probable class."""

    def predict(self, X: Array) -> Array: ...


@runtime_checkable
class SamplesPredictions(Protocol):
    """A model with a posterior to sample (MC dropout, an ensemble): ``predict_proba_samples(X, T)`` -> (T, n, C)
    class probabilities, one (n, C) draw per sample, each row summing to 1. Strategies that take ``samples``
    (BALD, BatchBALD) need it."""

    def predict_proba_samples(self, X: Array, T: int) -> Array: ...


@runtime_checkable
class EmbedsItems(Protocol):
    """A model with a representation of its own: ``embed(X)`` -> (n, d) float rows, the same d for every call
    between two fits (e.g. a network's penultimate layer). ``embedder=model`` asks it every round."""

    def embed(self, X: Array) -> Array: ...


@runtime_checkable
class LearnsFromPool(Protocol):
    """A semi-supervised model: ``fit(X, y, unlabeled=images)`` also learns from the unlabelled pool's images
    (same layout as X, possibly 0 rows); ``unlabeled=None`` means there is no pool to learn from.

    ``isinstance`` cannot tell this ``fit`` from a plain one; :func:`learns_from_pool` reads the signature.
    """

    def fit(self, X: Array, y: Array, unlabeled: Array | None = None) -> Any: ...


def learns_from_pool(model: object) -> bool:
    """Whether ``model.fit`` takes ``unlabeled`` (see :class:`LearnsFromPool`)."""
    fit = getattr(model, "fit", None)
    return fit is not None and _takes(fit, "unlabeled")


class WarmStarts(Protocol):
    """A model that can continue from the previous round's: ``fit(X, y, warm_from=previous)``, ``previous`` being
    the last round's fitted model of the same configuration (None: no earlier round was trained). The model
    decides whether it uses it (``model.warm_start``) and must not change it.

    ``isinstance`` cannot tell this ``fit`` from a plain one; :func:`warm_starts` reads the signature.
    """

    def fit(self, X: Array, y: Array, warm_from: Any | None = None) -> Any: ...


def warm_starts(model: object) -> bool:
    """Whether ``model.fit`` takes ``warm_from`` and the model is set to use it (see :class:`WarmStarts`)."""
    fit = getattr(model, "fit", None)
    return fit is not None and _takes(fit, "warm_from") and bool(getattr(model, "warm_start", False))


# --- embedders ------------------------------------------------------------------------------------------------


@runtime_checkable
class Embedder(Protocol):
    """An embedder computed once per run: ``fit_transform(images)`` -> (n, d) float rows, one per image, in the
    images' order. ``images`` is an (n, H, W[, ch]) array or an array-like read from disk by index. A row of NaN
    marks an item that cannot be placed (e.g. non-finite pixels)."""

    def fit_transform(self, images: Any) -> Array: ...


class BlockEmbedder(Protocol):
    """An :class:`Embedder` that can spread its work: ``fit_transform(images, map_blocks=...)`` runs its passes
    over blocks of items through ``map_blocks`` (:data:`BlockMap`: the run's compute backend); None means in this
    process. The result must not depend on where the blocks ran.

    ``isinstance`` cannot tell this ``fit_transform`` from a plain one; :func:`spreads_blocks` reads the signature.
    """

    def fit_transform(self, images: Any, map_blocks: BlockMap | None = None) -> Array: ...


def spreads_blocks(embedder: object) -> bool:
    """Whether ``embedder.fit_transform`` takes ``map_blocks`` (see :class:`BlockEmbedder`)."""
    fit_transform = getattr(embedder, "fit_transform", None)
    return fit_transform is not None and _takes(fit_transform, "map_blocks")


@runtime_checkable
class ModelEmbedder(Protocol):
    """An embedder that asks the current model every round: ``embed_with(model, images)`` -> (n, d) float rows,
    or None where it has nothing to say (no trained model yet, or a model without :class:`EmbedsItems`); the
    runner then uses the ``fallback`` embedder's rows, computed once per run."""

    @property
    def fallback(self) -> Embedder: ...

    def embed_with(self, model: Any | None, images: Array) -> Array | None: ...


# --- candidate filters ----------------------------------------------------------------------------------------


class FilterInputs(Protocol):
    """What a candidate filter may read about one round (the runner provides it)."""

    @property
    def labeled(self) -> Array: ...  # item indices of the labelled items, (m,)

    @property
    def class_names(self) -> list[str]: ...

    @property
    def neighbours(self) -> NeighbourSearch | None: ...  # the run's shared neighbour search

    def metric(self, name: str) -> Array: ...  # a metric column over every item, (N,); NaN: not computed

    def item_column(self, name: str) -> Array: ...  # a per-item column of the source (e.g. ``stage``), (N,)

    def tags(self) -> dict[int, set[str]]: ...  # tags by item index

    def probs(self, indices: Array) -> Array | None: ...  # (len(indices), C); None while no model is trained

    def embeddings(self, indices: Array) -> Array: ...  # (len(indices), d)


@dataclass(frozen=True)
class Removal:
    """The candidates one filter rejected in a round, and why."""

    filter: str  # the filters key that rejected them, e.g. ``metrics.brightness``
    reason: str  # why, in words
    items: Array  # the rejected candidates' item indices, in candidate order
    values: list[Any]  # per rejected item, the value the filter judged (empty where there is none to show)


class CandidateScreen(Protocol):
    """Which unlabelled items may be selected this round (``plugins.filters.candidates.CandidateFilter``).

    ``screen(candidates, inputs)``: candidates is an (n,) int64 array of item indices; returns those that pass,
    in their original order, and one :class:`Removal` per filter that removed some.
    ``apply`` returns only the kept indices. The rest says, before the run starts, what the filter will read so
    the runner can refuse a config it cannot serve: the metric columns (``metric_names``) and per-item source
    columns (``item_columns``) it reads; whether it needs the current model's probabilities (``needs_model``)
    or embeddings (``needs_embeddings``); ``class_indices(class_names)``: the classes it keeps by prediction as
    class indices, None when it does not filter by class (raises for a class the project lacks);
    ``metric_ranges``: metric name -> (low, high), None for an open end.
    """

    @property
    def metric_names(self) -> list[str]: ...

    @property
    def item_columns(self) -> list[str]: ...

    @property
    def needs_model(self) -> bool: ...

    @property
    def needs_embeddings(self) -> bool: ...

    @property
    def metric_ranges(self) -> Mapping[str, tuple[float | None, float | None]]: ...

    def class_indices(self, class_names: Sequence[str]) -> list[int] | None: ...

    def screen(self, candidates: Array, inputs: FilterInputs) -> tuple[Array, list[Removal]]: ...

    def apply(self, candidates: Array, inputs: FilterInputs) -> Array: ...


# --- acquisition functions (plugins.acquisition.protocol says what each input is) -----------------------------


@runtime_checkable
class ListsInputs(Protocol):
    """A callable that names its inputs instead of taking them as parameters (a combination of functions):
    ``inputs`` lists names of ``plugins.acquisition.protocol.INPUTS``; None means: read the parameters instead."""

    @property
    def inputs(self) -> Sequence[str] | None: ...


@runtime_checkable
class NarrowsInputs(Protocol):
    """A callable whose needs change from round to round: ``inputs_for(round, n_labeled)`` is the part of its
    ``inputs`` it needs in that round (a schedule)."""

    def inputs_for(self, round_: int, n_labeled: int) -> Sequence[str]: ...


@runtime_checkable
class ReadsMetrics(Protocol):
    """A callable that reads metric columns through its ``metrics`` input: ``metric_names`` are the columns, which
    the runner must compute."""

    @property
    def metric_names(self) -> Sequence[str]: ...


def _takes(function: Callable[..., Any], parameter: str) -> bool:
    try:
        return parameter in inspect.signature(function).parameters
    except (TypeError, ValueError):  # no signature to read (some builtins): assume the plain form
        return False

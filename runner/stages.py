"""The stage bodies. Each computes from what it is given and returns the writer of its one store transaction.

A stage never commits anything itself: ``runner.session.Session.stage`` calls the body, then runs the writer and
marks the stage done in one transaction, so a stage is either wholly recorded or not at all.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugins.acquisition.protocol import PastRound
from plugins.neighbours import NeighbourSearch
from plugins.protocols import learns_from_pool, warm_starts
from runner.acquire import Acquisition, InputProvider, score_candidates, score_shards, select_batch
from runner.audit import out_of_fold_probs
from runner.compute import Compute
from runner.errors import PluginError
from runner.quality import Embeddings, Metric, compute_metrics
from runner.store import GLOBAL_ROUND, Store
from runner.views import RoundView

log = logging.getLogger("runner")
Writer = Callable[[Store], None]
# Per-round blobs that only live until the round has acted.
ROUND_BLOBS = ("model/", "scores/", "positions/", "candidates/", "predicted/")


class Unfinished:
    """The writer of a stage that made progress without finishing (a platform applied part of a plan): its writes
    are committed, and the stage is not marked done, so the next invocation runs it again."""

    def __init__(self, write: Writer) -> None:
        self.write = write

    def __call__(self, tx: Store) -> None:
        self.write(tx)


@dataclass(frozen=True)
class StartPlan:
    """What the import stage records: every item's split and truth, and the labels known before round 0
    (``initial`` items, labelled ``initial_labels`` by the act function: the truth, unless annotators err)."""

    item_ids: np.ndarray
    split: np.ndarray
    truths: np.ndarray
    initial: np.ndarray
    initial_labels: np.ndarray


def import_items(plan: StartPlan, fingerprint: str, n_classes: int) -> Writer:
    n, pool = len(plan.item_ids), int((plan.split == "pool").sum())
    log.info(f"imported {n} items: {pool} pool, {n - pool} test, {len(plan.initial)} initial labels")

    def write(tx: Store) -> None:
        truths = [None if y < 0 else int(y) for y in plan.truths]
        tx.add_items([str(i) for i in plan.item_ids], list(plan.split), truths)
        tx.add_labels(plan.initial, plan.initial_labels, GLOBAL_ROUND)
        tx.set_meta("data_fingerprint", fingerprint)
        tx.set_meta("n_classes", str(n_classes))

    return write


def train(model: Any, images: np.ndarray, labels: np.ndarray, round_: int, label: str,
          unlabeled: Callable[[], np.ndarray] | None = None,
          previous: Callable[[], Any | None] | None = None) -> Writer:
    """Fit ``model`` (a fresh one, seeded for this round) on the labelled images and keep it for the round.

    A model whose ``fit`` takes ``unlabeled`` learns from the unlabelled pool's images too (semi-supervised).
    A model that warm-starts (``model.warm_start``) continues from the previous round's model (``previous()``,
    kept under ``warm/`` for the next round, so a resumed run continues from exactly the same weights).
    """
    arguments: dict[str, Any] = {}
    if unlabeled is not None and learns_from_pool(model):
        arguments["unlabeled"] = unlabeled()
    warm = warm_starts(model)
    if warm and previous is not None:
        arguments["warm_from"] = previous()
    try:
        model.fit(images, labels, **arguments)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise PluginError(f"{label}: fit failed: {exc}") from None
    blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)

    def write(tx: Store) -> None:
        tx.put_blob(f"model/{round_:03d}", blob)
        if warm:
            tx.put_blob(warm_blob(round_), blob)
            # The one before the previous is no longer needed; the previous stays, should this round be redone.
            tx.delete_blobs(warm_blob(round_ - 2))

    return write


def warm_blob(round_: int) -> str:
    """Where a warm-starting model of ``round_`` is kept for the next round."""
    return f"warm/{round_:03d}"


def evaluate(view: RoundView, test: np.ndarray, labels: np.ndarray, extra: dict[str, Any] | None = None,
             stop_set: np.ndarray | None = None, previous: np.ndarray | None = None) -> Writer:
    """Accuracy of the round's model on the test items whose label is known (none known: accuracy n/a), from
    the model's own predictions. With a stop set, the model's predictions there are kept, and their agreement
    with the previous round's (``previous``), Cohen's kappa, is recorded as ``stop_kappa``."""
    known = test[labels[test] >= 0]
    accuracy = None
    predicted = view.predictions(known) if len(known) else None
    if predicted is not None:
        accuracy = float((predicted == labels[known]).mean())
    n_labeled = len(view.labeled)
    figures = dict(extra or {})
    on_stop_set = view.predictions(stop_set) if stop_set is not None and len(stop_set) else None
    if on_stop_set is not None and previous is not None and len(previous) == len(on_stop_set):
        figures["stop_kappa"] = agreement(previous, on_stop_set, view.n_classes)

    def write(tx: Store) -> None:
        tx.record_round(view.round_, n_labeled, accuracy, figures)
        if on_stop_set is not None:
            tx.put_array(f"stop/{view.round_:03d}", on_stop_set)

    return write


def agreement(first: np.ndarray, second: np.ndarray, n_classes: int) -> float:
    """Cohen's kappa between two models' predicted classes; 1.0 for identical predictions (where kappa itself
    is 0/0, both models predicting one class)."""
    if np.array_equal(first, second):
        return 1.0
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(first, second, labels=np.arange(n_classes)))


def draw_stop_set(pool: np.ndarray, size: int, rng: np.random.Generator) -> Writer:
    """The fixed unlabelled items the stabilizing-predictions rule compares successive models on."""
    chosen = np.sort(rng.choice(pool, size=min(size, len(pool)), replace=False)) if len(pool) else pool
    log.info(f"stop set: {len(chosen)} unlabelled items")
    return lambda tx: tx.put_array("stop_set/indices", chosen.astype(np.int64))


def audit(round_: int, images: np.ndarray, indices: np.ndarray, labels: np.ndarray, make_model: Callable[[], Any],
          folds: int, seed: int, judge: Callable[..., Any], label: str, min_labels: int) -> Writer:
    """The labelled items whose label looks wrong: out-of-fold probabilities (a fresh model per fold), judged by
    the audit function. A class with a single labelled item cannot be judged by a model that never saw it, so
    its item is left out; with fewer than ``min_labels`` judged items the round records no issues."""
    counts = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    judged = counts[labels] >= 2 if len(labels) else np.zeros(0, bool)
    idx, given = indices[judged], labels[judged]
    empty = np.zeros(0, np.int64)
    if len(idx) < max(min_labels, 2) or len(np.unique(given)) < 2:
        return lambda tx: tx.record_label_issues(round_, empty, empty, empty, np.zeros(0))
    present, encoded = np.unique(given, return_inverse=True)
    try:
        probs = out_of_fold_probs(make_model, images[idx], encoded, folds, seed)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise PluginError(f"{label}: out-of-fold fit failed: {exc}") from None
    try:
        flagged, scores = judge(labels=encoded, pred_probs=probs)
    except ValueError as exc:
        raise PluginError(f"{label}: {exc}") from None
    flagged, scores = np.asarray(flagged, dtype=bool), np.asarray(scores, dtype=np.float64)
    if flagged.shape != idx.shape or scores.shape != idx.shape or not np.isfinite(scores[flagged]).all():
        raise PluginError(f"{label}: must return a flag and a finite score per labelled item ({len(idx)})")
    suggested = present[probs.argmax(axis=1)]
    order = np.lexsort((idx[flagged], -scores[flagged]))
    rows = (idx[flagged][order], given[flagged][order], suggested[flagged][order], scores[flagged][order])
    log.info(f"audit: {len(rows[0])} of {len(idx)} labels look wrong")
    return lambda tx: tx.record_label_issues(round_, *rows)


def embed(embeddings: Embeddings, images: Any, compute: Compute | None = None) -> Writer:
    vectors = embeddings.fit_static(images, None if compute is None else compute.map)
    curve = embeddings.loss_curve

    def write(tx: Store) -> None:
        tx.put_array("embeddings/static", vectors)
        if curve is not None:
            tx.put_array("embeddings/loss_curve", curve)

    return write


def measure(metrics: list[Metric], images: Any, item_ids: np.ndarray, n_classes: int,
            static_embeddings: np.ndarray | None, unlabeled: np.ndarray, rng: np.random.Generator,
            original: Callable[[int], np.ndarray] | None = None, neighbours: NeighbourSearch | None = None,
            compute: Compute | None = None, shard_items: int | None = None) -> Writer:
    """Metric columns over every item; image metrics on the original images where the source keeps them."""
    columns = compute_metrics(metrics, images, item_ids, n_classes, static_embeddings, unlabeled, rng,
                              original=original, neighbours=neighbours, compute=compute, shard_items=shard_items)

    def write(tx: Store) -> None:
        for name, values in columns.items():
            tx.put_array(f"metrics/{name}", values)

    return write


def score(view: RoundView, candidates: np.ndarray, acquisition: Acquisition, budget: float, chunk_size: int,
          needs_predicted: bool, rng: np.random.Generator, screened: dict[str, Any], compute: Compute | None = None,
          shard_items: int | None = None) -> Writer:
    """Score the (filtered) candidates, or let a batch strategy choose its positions, and keep the result.

    A batch strategy's answer stays what it is, an ordered list of positions; a score function's answer is one
    score per candidate, turned into a batch by the selection policy in ``select``. A score function that
    needs only the model's predictions is computed shard by shard through ``compute`` (Ray tasks with
    compute=ray), with the same result. ``screened`` (see :func:`screening_record`) is kept beside them, for
    the report. What the acquisition asked to remember of the round goes into the round's row
    (``acquisition`` in metrics.jsonl), where ``history`` finds it.
    """
    acquisition = acquisition.at(view.round_, len(view.labeled))
    provider = InputProvider(candidates, view.inputs(acquisition), view.constants(rng))
    result: dict[str, np.ndarray] = {"candidates": candidates}
    if acquisition.is_batch:
        result["positions"], record = select_batch(acquisition, provider, int(budget))
    elif compute is not None and acquisition.shardable and view.has_model:
        predictor = view.predictor
        getters: dict[str, Callable[[np.ndarray], Any]] = {"probs": predictor.probs, "samples": predictor.samples}
        result["scores"], record = score_shards(acquisition, candidates, getters, {"n_classes": view.n_classes},
                                                chunk_size, shard_items or len(candidates), compute)
    else:
        result["scores"], record = score_candidates(acquisition, provider, chunk_size)
    if needs_predicted:
        result["predicted"] = provider.get("probs").argmax(axis=1) if len(candidates) else np.zeros(0, np.int64)

    def write(tx: Store) -> None:
        for name, values in result.items():
            tx.put_array(f"{name}/{view.round_:03d}", values)
        tx.put_blob(screening_blob(view.round_), json.dumps(screened, sort_keys=True).encode())
        if record:
            _add_to_round(tx, view.round_, {"acquisition": record})

    return write


def screening_blob(round_: int) -> str:
    return f"screened/{round_:03d}"


def screening_record(unlabelled: int, passed: int, scored: int, removals: list[Any], examples: int) -> dict[str, Any]:
    """How a round's candidates narrowed: unlabelled, passed the filters, scored (after ``pool_subset``), and per
    filter how many it removed and why, with at most ``examples`` of them (spread evenly over item order) and the
    value the filter judged for each. Bounded, so that it stays small on any pool."""
    filters = []
    for removal in removals:
        shown = np.unique(np.linspace(0, len(removal.items) - 1, min(examples, len(removal.items))).round())
        shown = shown.astype(np.int64)
        filters.append({
            "filter": removal.filter,
            "reason": removal.reason,
            "count": int(len(removal.items)),
            "items": [int(removal.items[i]) for i in shown],
            "values": [removal.values[i] for i in shown] if removal.values else [],
        })
    return {"unlabelled": unlabelled, "passed": passed, "scored": scored, "filters": filters}


def _add_to_round(tx: Store, round_: int, extra: dict[str, Any]) -> None:
    """Merge ``extra`` into the figures of an evaluated round's row."""
    row = next(r for r in tx.rounds() if r["round"] == round_)
    kept = {k: v for k, v in row.items() if k not in ("round", "n_labeled", "test_accuracy")}
    tx.record_round(round_, row["n_labeled"], row["test_accuracy"], {**kept, **extra})


def history(store: Store, round_: int) -> tuple[PastRound, ...]:
    """The rounds before ``round_`` as an acquisition function sees them: all read from the store."""
    labeled, _ = store.labeled()
    rows = store.rounds()
    accuracy = {row["round"]: row["test_accuracy"] for row in rows}
    past = []
    for row in rows:
        if row["round"] >= round_ or row["round"] < 0:
            continue
        selected = store.selected_indices(row["round"])
        positions = np.searchsorted(labeled, selected[np.isin(selected, labeled)])  # in rank order
        past.append(PastRound(
            round=int(row["round"]), n_labeled=int(row["n_labeled"]), test_accuracy=row["test_accuracy"],
            accuracy_after=accuracy.get(row["round"] + 1), labeled_rows=positions.astype(np.int64),
            record=row.get("acquisition", {}),
        ))
    return tuple(past)


def select(round_: int, store: Store, policy: Callable[..., np.ndarray], policy_inputs: tuple[str, ...],
           budget: float, cost: np.ndarray | None, tag: str | None,
           relabel: tuple[np.ndarray, np.ndarray] | None = None) -> Writer:
    """The round's batch, best first, from the stored scores (or a batch strategy's positions) and the policy;
    ``budget`` is what is left for new labels once ``relabel`` (the suspects sent back, and their scores) took
    its part, and both are recorded together."""
    candidates = store.array(f"candidates/{round_:03d}")
    positions = store.get_array(f"positions/{round_:03d}")
    if positions is not None:
        chosen = positions
        # A batch strategy gives an order, not scores; the selection file shows the order as (k - rank + 1) / k.
        scores = (len(chosen) - np.arange(len(chosen))) / max(len(chosen), 1)
    else:
        all_scores = store.array(f"scores/{round_:03d}")
        available = {
            "scores": all_scores,
            "budget": budget if cost is not None else int(budget),
            "predicted": store.get_array(f"predicted/{round_:03d}"),
            "cost": None if cost is None else cost[candidates],
        }
        chosen = np.asarray(policy(**{name: available[name] for name in policy_inputs}), dtype=np.int64)
        scores = all_scores[chosen]

    def write(tx: Store) -> None:
        tx.record_selection(round_, candidates[chosen], scores)
        if tag:
            tx.add_tags(candidates[chosen], tag, round_)
        if relabel is not None:
            tx.record_relabels(round_, *relabel)

    return write


def reveal(round_: int, selected: np.ndarray, labels: np.ndarray, relabeled: np.ndarray,
           relabel_truths: np.ndarray) -> Writer:
    """Simulation's annotators have labelled the selection (``labels``); the suspects sent back get a careful
    second look, which finds the truth. The round's per-round blobs go."""

    def write(tx: Store) -> None:
        tx.add_labels(selected, labels, round_)
        if len(relabeled):
            tx.replace_labels(relabeled, relabel_truths)
        for prefix in ROUND_BLOBS:
            tx.delete_blobs(f"{prefix}{round_:03d}")

    return write

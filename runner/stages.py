"""The stage bodies. Each computes from what it is given and returns the writer of its one store transaction.

A stage never commits anything itself: ``runner.loop.run_stage`` calls the body, then runs the writer and marks
the stage done in one transaction, so a stage is either wholly recorded or not at all.
"""

from __future__ import annotations

import inspect
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugins.acquisition.protocol import PastRound
from runner.acquire import Acquisition, InputProvider, score_candidates, select_batch
from runner.errors import PluginError
from runner.quality import Embeddings, Metric, compute_metrics
from runner.store import GLOBAL_ROUND, Store
from runner.views import RoundView

log = logging.getLogger("runner")
Writer = Callable[[Store], None]
# Per-round blobs that only live until the round has acted.
ROUND_BLOBS = ("model/", "scores/", "positions/", "candidates/", "predicted/")


@dataclass(frozen=True)
class StartPlan:
    """What the import stage records: every item's split and truth, and the labels known before round 0."""

    item_ids: np.ndarray
    split: np.ndarray
    truths: np.ndarray
    initial: np.ndarray


def import_items(plan: StartPlan, fingerprint: str, n_classes: int) -> Writer:
    n, pool = len(plan.item_ids), int((plan.split == "pool").sum())
    log.info(f"imported {n} items: {pool} pool, {n - pool} test, {len(plan.initial)} initial labels")

    def write(tx: Store) -> None:
        truths = [None if y < 0 else int(y) for y in plan.truths]
        tx.add_items([str(i) for i in plan.item_ids], list(plan.split), truths)
        tx.add_labels(plan.initial, plan.truths[plan.initial], GLOBAL_ROUND)
        tx.set_meta("data_fingerprint", fingerprint)
        tx.set_meta("n_classes", str(n_classes))

    return write


def train(model: Any, images: np.ndarray, labels: np.ndarray, round_: int, label: str,
          unlabeled: Callable[[], np.ndarray] | None = None) -> Writer:
    """Fit ``model`` (a fresh one, seeded for this round) on the labelled images and keep it for the round.

    A model whose ``fit`` takes ``unlabeled`` learns from the unlabelled pool's images too (semi-supervised).
    """
    try:
        if unlabeled is not None and "unlabeled" in inspect.signature(model.fit).parameters:
            model.fit(images, labels, unlabeled=unlabeled())
        else:
            model.fit(images, labels)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise PluginError(f"{label}: fit failed: {exc}") from None
    blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    return lambda tx: tx.put_blob(f"model/{round_:03d}", blob)


def evaluate(view: RoundView, test: np.ndarray, labels: np.ndarray, extra: dict | None = None) -> Writer:
    """Accuracy of the round's model on the test items whose label is known (none known: accuracy n/a)."""
    known = test[labels[test] >= 0]
    accuracy = None
    probs = view.probs(known) if len(known) else None
    if probs is not None:
        accuracy = float((probs.argmax(axis=1) == labels[known]).mean())
    n_labeled = len(view.labeled)
    return lambda tx: tx.record_round(view.round_, n_labeled, accuracy, extra or {})


def embed(embeddings: Embeddings, images: np.ndarray) -> Writer:
    vectors = embeddings.fit_static(images)
    return lambda tx: tx.put_array("embeddings/static", vectors)


def measure(metrics: list[Metric], images: np.ndarray, item_ids: np.ndarray, n_classes: int,
            static_embeddings: np.ndarray | None, unlabeled: np.ndarray, rng: np.random.Generator) -> Writer:
    columns = compute_metrics(metrics, images, item_ids, n_classes, static_embeddings, unlabeled, rng)

    def write(tx: Store) -> None:
        for name, values in columns.items():
            tx.put_array(f"metrics/{name}", values)

    return write


def score(view: RoundView, candidates: np.ndarray, acquisition: Acquisition, budget: float, chunk_size: int,
          needs_predicted: bool, rng: np.random.Generator) -> Writer:
    """Score the (filtered) candidates, or let a batch strategy choose its positions, and keep the result.

    A batch strategy's answer stays what it is, an ordered list of positions; a score function's answer is one
    score per candidate, turned into a batch by the selection policy in ``select``. What the acquisition asked to
    remember of the round goes into the round's row (``acquisition`` in metrics.jsonl), where ``history`` finds it.
    """
    acquisition = acquisition.at(view.round_, len(view.labeled))
    provider = InputProvider(candidates, view.inputs(acquisition), view.constants(rng))
    result: dict[str, np.ndarray] = {"candidates": candidates}
    if acquisition.is_batch:
        result["positions"], record = select_batch(acquisition, provider, int(budget))
    else:
        result["scores"], record = score_candidates(acquisition, provider, chunk_size)
    if needs_predicted:
        result["predicted"] = provider.get("probs").argmax(axis=1) if len(candidates) else np.zeros(0, np.int64)

    def write(tx: Store) -> None:
        for name, values in result.items():
            tx.put_array(f"{name}/{view.round_:03d}", values)
        if record:
            _add_to_round(tx, view.round_, {"acquisition": record})

    return write


def _add_to_round(tx: Store, round_: int, extra: dict) -> None:
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
           budget: float, cost: np.ndarray | None, tag: str | None) -> Writer:
    """The round's batch, best first, from the stored scores (or a batch strategy's positions) and the policy."""
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

    return write


def reveal(round_: int, selected: np.ndarray, truths: np.ndarray, act: Callable[..., np.ndarray],
           label: str) -> Writer:
    """Simulation's annotator: the act plugin turns the selected items' truths into their labels."""
    try:
        labels = np.asarray(act(truth=truths), dtype=np.int64)
    except ValueError as exc:
        raise PluginError(f"{label}: {exc}") from None
    if labels.shape != selected.shape:
        raise PluginError(f"{label}: returned {labels.shape} labels for {len(selected)} items")

    def write(tx: Store) -> None:
        tx.add_labels(selected, labels, round_)
        for prefix in ROUND_BLOBS:
            tx.delete_blobs(f"{prefix}{round_:03d}")

    return write

"""The stage bodies. Each computes from what it is given and returns the writer of its one store transaction.

A stage never commits anything itself: ``runner.loop.run_stage`` calls the body, then runs the writer and marks
the stage done in one transaction, so a stage is either wholly recorded or not at all.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugins.neighbours import NeighbourSearch
from runner.acquire import Acquisition, InputProvider, score_candidates, score_shards, select_batch
from runner.compute import Compute
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


def train(model: Any, images: np.ndarray, labels: np.ndarray, round_: int, label: str) -> Writer:
    """Fit ``model`` (a fresh one, seeded for this round) on the labelled images and keep it for the round."""
    try:
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


def embed(embeddings: Embeddings, images: Any, compute: Compute | None = None) -> Writer:
    vectors = embeddings.fit_static(images, None if compute is None else compute.map)
    return lambda tx: tx.put_array("embeddings/static", vectors)


def measure(metrics: list[Metric], images: Any, item_ids: np.ndarray, n_classes: int,
            static_embeddings: np.ndarray | None, unlabeled: np.ndarray, rng: np.random.Generator,
            neighbours: NeighbourSearch | None = None, compute: Compute | None = None,
            shard_items: int | None = None) -> Writer:
    columns = compute_metrics(metrics, images, item_ids, n_classes, static_embeddings, unlabeled, rng,
                              neighbours, compute, shard_items)

    def write(tx: Store) -> None:
        for name, values in columns.items():
            tx.put_array(f"metrics/{name}", values)

    return write


def score(view: RoundView, candidates: np.ndarray, acquisition: Acquisition, budget: float, chunk_size: int,
          needs_predicted: bool, rng: np.random.Generator, compute: Compute | None = None,
          shard_items: int | None = None) -> Writer:
    """Score the (filtered) candidates, or let a batch strategy choose its positions, and keep the result.

    A batch strategy's answer stays what it is, an ordered list of positions; a score function's answer is one
    score per candidate, turned into a batch by the selection policy in ``select``. A score function that
    needs only the model's predictions is computed shard by shard through ``compute`` (Ray tasks with
    compute=ray), with the same result.
    """
    constants = {"rng": rng, "n_classes": view.n_classes, "neighbours": view.neighbours}
    provider = InputProvider(candidates, view.inputs(acquisition), constants)
    result: dict[str, np.ndarray] = {"candidates": candidates}
    if acquisition.is_batch:
        result["positions"] = select_batch(acquisition, provider, int(budget))
    elif compute is not None and acquisition.shardable and view.has_model:
        predictor = view.predictor
        getters: dict[str, Callable[[np.ndarray], Any]] = {"probs": predictor.probs, "samples": predictor.samples}
        result["scores"] = score_shards(acquisition, candidates, getters, {"n_classes": view.n_classes}, chunk_size,
                                        shard_items or len(candidates), compute)
    else:
        result["scores"] = score_candidates(acquisition, provider, chunk_size)
    if needs_predicted:
        result["predicted"] = provider.get("probs").argmax(axis=1) if len(candidates) else np.zeros(0, np.int64)

    def write(tx: Store) -> None:
        for name, values in result.items():
            tx.put_array(f"{name}/{view.round_:03d}", values)

    return write


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

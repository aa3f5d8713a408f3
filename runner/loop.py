"""Stage sequencing: ``import``, then ``train -> evaluate -> score -> select -> act`` per round.

Every stage computes, then writes its results and its own "done" record in one store transaction. A re-run of
the same run directory skips what is recorded done, so a killed run resumes where it stopped and ends with the
same store, and therefore the same files, as an uninterrupted run (random draws: see ``runner.seeds``).

:class:`Session` is what a sequence works with (the run's parts, its store, the round's model); :func:`simulate`
is the simulation sequence. The human-in-the-loop sequence (``runner.platform``) is built from the same stages.
"""

from __future__ import annotations

import functools
import logging
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from runner import artifacts, environment, stages
from runner.assemble import Parts
from runner.seeds import stage_rng, stage_seed
from runner.store import GLOBAL_ROUND, Store
from runner.views import RoundView

log = logging.getLogger("runner")

class Session:
    """One invocation's hold on a run: its parts, its store and directory, and the model of the round at hand."""

    def __init__(self, parts: Parts, store: Store, run_dir: Path) -> None:
        self.parts = parts
        self.store = store
        self.run_dir = run_dir
        self.models: dict[int, Any] = {}
        parts.embeddings.bind(parts.data.images, lambda: store.get_array("embeddings/static"))

    def stage(self, round_: int, name: str, work: Callable[[], stages.Writer]) -> None:
        """Run ``work`` unless recorded done; then its writer and the done record in one transaction."""
        if self.store.is_done(round_, name):
            return
        started = time.perf_counter()
        write = work()
        with self.store.transaction() as tx:
            write(tx)
            tx.mark_done(round_, name, time.perf_counter() - started)

    # --- what stages are given --------------------------------------------------------------------------
    def model(self, round_: int) -> Any | None:
        if round_ not in self.models:
            blob = self.store.get_blob(f"model/{round_:03d}")
            self.models = {} if blob is None else {round_: pickle.loads(blob)}
        return self.models.get(round_)

    def view(self, round_: int) -> RoundView:
        parts, store = self.parts, self.store
        labeled, labels = store.labeled()
        return RoundView(
            round_=round_,
            model=self.model(round_),
            labeled=labeled,
            labels=labels,
            images=parts.data.images,
            class_names=list(parts.data.class_names),
            model_label=parts.model_label,
            embedder=parts.embeddings,
            read_metric=lambda name: store.get_array(f"metrics/{name}"),
            source_columns=parts.data.extra,
            read_tags=store.tags,
            read_history=lambda: stages.history(store, round_),
            mc_samples=parts.acquisition.mc_samples,
        )

    def candidates(self) -> np.ndarray:
        """Unlabelled pool items, before filters."""
        labeled, _ = self.store.labeled()
        return np.setdiff1d(self.store.split_indices("pool"), labeled, assume_unique=True)

    def cost_column(self) -> np.ndarray | None:
        """``selection.cost`` over every item: a computed metric, or a per-item column of the source."""
        key = self.parts.selection.cost
        if key is None:
            return None
        stored = self.store.get_array(f"metrics/{key}")
        return stored if stored is not None else np.asarray(self.parts.data.extra[key], dtype=np.float64)

    # --- stages shared by both sequences -------------------------------------------------------------------
    def embed_and_measure(self, round_: int) -> None:
        parts = self.parts
        if parts.embeddings.needed:
            self.stage(round_, "embed", lambda: stages.embed(parts.embeddings, parts.data.images))
        if parts.metrics:
            labeled, _ = self.store.labeled()
            unlabeled = np.setdiff1d(self.store.split_indices("pool"), labeled)
            self.stage(round_, "metrics", lambda: stages.measure(
                parts.metrics, parts.data.images, parts.data.item_ids, parts.data.n_classes,
                parts.embeddings.static(), unlabeled, stage_rng(parts.seed, GLOBAL_ROUND, "metrics"),
            ))
            artifacts.write_item_metrics(self.store, self.run_dir, [m.name for m in parts.metrics])

    def train(self, round_: int) -> None:
        def work() -> stages.Writer:
            indices, labels = self.store.labeled()
            if len(indices) == 0:
                return lambda tx: None
            model = self.parts.new_model(stage_seed(self.parts.seed, round_, "train"))
            images = self.parts.data.images
            write = stages.train(model, images[indices], labels, round_, self.parts.model_label,
                                 unlabeled=lambda: images[self.candidates()])
            self.models = {round_: model}
            return write

        self.stage(round_, "train", work)

    def evaluate(self, round_: int, extra: Callable[[], dict] | None = None) -> None:
        test = self.store.split_indices("test")
        self.stage(round_, "evaluate", lambda: stages.evaluate(
            self.view(round_), test, np.asarray(self.parts.data.labels), None if extra is None else extra()
        ))

    def filtered_candidates(self, round_: int) -> np.ndarray:
        return self.parts.filters.apply(self.candidates(), self.view(round_))

    def score_and_select(self, round_: int) -> None:
        parts = self.parts

        def score() -> stages.Writer:
            rng = stage_rng(parts.seed, round_, "score")
            view = self.view(round_)
            candidates = parts.filters.apply(self.candidates(), view)
            subset = parts.selection.pool_subset
            if subset and len(candidates) > subset:
                candidates = np.sort(rng.choice(candidates, size=subset, replace=False))
            return stages.score(
                view, candidates, parts.acquisition, parts.selection.budget, parts.selection.chunk_size,
                "predicted" in parts.policy.inputs, rng,
            )

        self.stage(round_, "score", score)
        self.stage(round_, "select", lambda: stages.select(
            round_, self.store, parts.policy.function, parts.policy.inputs, parts.selection.budget,
            self.cost_column(), parts.selection.tag,
        ))
        artifacts.write_selection_csv(self.store, self.run_dir, round_)

    # --- the end -------------------------------------------------------------------------------------------
    def finish(self, stopped: str) -> dict:
        parts = self.parts
        rows = artifacts.write_metrics_jsonl(self.store, self.run_dir)
        if parts.metrics:
            artifacts.write_item_metrics(self.store, self.run_dir, [m.name for m in parts.metrics])
        title = f"{parts.project_name} · {parts.acquisition.name} · seed {parts.seed}"
        artifacts.write_learning_curve(rows, self.run_dir / "learning_curve.png", title)
        summary = summarize(rows, parts, stopped)
        summary["config_sha256"] = self.store.get_meta("config_sha256")
        summary["runner_version"] = self.store.get_meta("runner_version")
        summary["tags"] = artifacts.write_tags_csv(self.store, self.run_dir)
        summary["environment"] = environment.describe()
        artifacts.write_json(self.run_dir / "summary.json", summary)
        if not self.store.is_done(GLOBAL_ROUND, "finish"):
            with self.store.transaction() as tx:
                tx.mark_done(GLOBAL_ROUND, "finish", 0.0)
        return summary


def simulate(session: Session) -> dict:
    """All rounds of a simulated run: the oracle labels each selection until the rounds, the pool or the target
    accuracy run out."""
    parts, store = session.parts, session.store
    start = parts.start
    assert start is not None, "assemble draws the start of every simulated run"
    session.stage(GLOBAL_ROUND, "import", lambda: stages.import_items(start, parts.fingerprint, parts.data.n_classes))
    session.embed_and_measure(GLOBAL_ROUND)
    total = parts.loop.rounds
    done_before = [r["round"] for r in store.rounds()]
    if done_before and not store.is_done(GLOBAL_ROUND, "finish"):
        log.info(f"resuming {session.run_dir} after round {max(done_before)}")
    stopped: str | None = "rounds"
    for round_ in range(total + 1):
        started = time.perf_counter()
        fresh = not _round_closed(session, round_)
        session.train(round_)
        session.evaluate(round_)
        stopped = _stop_reason(session, round_)
        if stopped is None:
            session.score_and_select(round_)
            session.stage(round_, "act", functools.partial(_reveal, session, round_))
        rows = artifacts.write_metrics_jsonl(store, session.run_dir)
        if fresh:
            _report_round(rows[-1], total, time.perf_counter() - started)
        if stopped is not None:
            break
    return session.finish(stopped or "rounds")


def _reveal(session: Session, round_: int) -> stages.Writer:
    selected = session.store.selected_indices(round_)
    act = session.parts.act
    return stages.reveal(round_, selected, session.store.truths(selected), act.function, act.label)


def _stop_reason(session: Session, round_: int) -> str | None:
    target = session.parts.loop.target_accuracy
    accuracy = next(r["test_accuracy"] for r in session.store.rounds() if r["round"] == round_)
    if target is not None and accuracy is not None and accuracy >= target:
        return "target_accuracy"
    if round_ >= session.parts.loop.rounds:
        return "rounds"
    if len(session.candidates()) == 0 and not session.store.is_done(round_, "act"):
        return "pool_exhausted"
    return None


def _round_closed(session: Session, round_: int) -> bool:
    store = session.store
    return store.is_done(round_, "act") or (
        store.is_done(round_, "evaluate") and _stop_reason(session, round_) is not None
    )


def _report_round(row: dict, total_rounds: int, seconds: float) -> None:
    accuracy = "n/a   " if row["test_accuracy"] is None else f"{row['test_accuracy']:.4f}"
    log.info(
        f"round {row['round']:>3}/{total_rounds} | labelled {row['n_labeled']:>6} | "
        f"test accuracy {accuracy} | {seconds:6.2f} s"
    )


def summarize(rows: list[dict], parts: Parts, stopped: str) -> dict:
    evaluated = [r for r in rows if r["test_accuracy"] is not None]
    target = parts.loop.target_accuracy
    reached = [r["n_labeled"] for r in evaluated if target is not None and r["test_accuracy"] >= target]
    seconds = sum(sum(r["seconds"].values()) for r in rows)
    return {
        "project": parts.project_name,
        "acquisition": parts.acquisition.name,
        "model": parts.config["model"]["_target_"],
        "seed": parts.seed,
        "rounds_evaluated": len(rows),
        "n_labeled": rows[-1]["n_labeled"] if rows else 0,
        "final_test_accuracy": evaluated[-1]["test_accuracy"] if evaluated else None,
        "best_test_accuracy": max(r["test_accuracy"] for r in evaluated) if evaluated else None,
        "target_accuracy": target,
        "labels_to_target": reached[0] if reached else None,
        "stopped": stopped,
        "stage_seconds_total": round(seconds, 3),
    }

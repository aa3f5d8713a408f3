"""One invocation's hold on a run: its parts, its store and directory, and the stages a round is made of.

Every stage computes, then writes its results and its own "done" record in one store transaction
(:meth:`Session.stage`). A re-run of the same run directory skips what is recorded done, so a killed run resumes
where it stopped and ends with the same store, and therefore the same files, as an uninterrupted run (random
draws: see ``runner.seeds``). The round driver (``runner.rounds``) sequences these stages; what differs between
modes is the labeller it is given (``runner.labellers``).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from plugins.neighbours import NeighbourSearch, NeighbourSettings
from plugins.protocols import Removal
from plugins.sources.dataset import Dataset
from runner import artifacts, environment, html_report, stages
from runner.assemble import Parts
from runner.compute import Compute, PeakMemory
from runner.seeds import stage_rng, stage_seed
from runner.stopping import stable_rounds
from runner.store import GLOBAL_ROUND, Store
from runner.views import RoundView

log = logging.getLogger("runner")


class Session:
    """One invocation's hold on a run: its parts, its store and directory, and the model of the round at hand."""

    def __init__(self, parts: Parts, store: Store, run_dir: Path, compute: Compute | None = None) -> None:
        self.parts = parts
        self.store = store
        self.run_dir = run_dir
        self.models: dict[int, Any] = {}
        self.compute = compute or Compute()
        # One neighbour index per embedding set for the whole invocation, shared by every stage.
        index = parts.compute.neighbours
        self.neighbours = NeighbourSearch(NeighbourSettings(
            approximate_above=index.approximate_above, cells=index.cells, probes=index.probes,
            recall_sample=index.recall_sample, seed=parts.seed))
        self.memory = PeakMemory()
        self.stage_resources: dict[str, dict[str, float]] = {}  # stages run by this invocation: seconds and peak RSS
        self._screened: dict[int, tuple[np.ndarray, list[Removal]]] = {}  # per round: filtered candidates, removals
        parts.embeddings.bind(parts.data.images, lambda: store.get_array("embeddings/static"))

    @property
    def data(self) -> Dataset:
        return self.parts.data

    def stage(self, round_: int, name: str, work: Callable[[], stages.Writer]) -> None:
        """Run ``work`` unless recorded done; then its writer and the done record in one transaction.

        ``work`` may return :class:`stages.Unfinished`: its writes are committed, and the stage stays open, to run
        again at the next invocation (a platform that applied part of a plan)."""
        if self.store.is_done(round_, name):
            return
        self.memory.start()
        started = time.perf_counter()
        write = work()
        with self.store.transaction() as tx:
            write(tx)
            if not isinstance(write, stages.Unfinished):
                tx.mark_done(round_, name, time.perf_counter() - started)
        seconds, peak = time.perf_counter() - started, self.memory.stop()
        self.stage_resources[f"{name}:{round_}"] = {"seconds": round(seconds, 3), "peak_rss_mib": peak}
        log.debug(f"stage {name} (round {round_}): {seconds:.2f} s, peak RSS {peak:.0f} MiB")

    # --- what stages are given --------------------------------------------------------------------------
    def model_inputs(self) -> Any:
        """What the model is trained on and predicts from, every item's: the images, or (``model.input:
        embeddings``) the static embeddings computed at the embed stage."""
        if self.parts.model_input == "pixels":
            return self.parts.data.images
        vectors = self.parts.embeddings.static()
        if vectors is None:
            raise RuntimeError("model.input=embeddings, and the embed stage has not computed the embeddings")
        return vectors

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
            images=self.model_inputs(),
            class_names=list(parts.data.class_names),
            model_label=parts.model_label,
            embedder=parts.embeddings,
            read_metric=lambda name: store.get_array(f"metrics/{name}"),
            source_columns=parts.data.extra,
            read_tags=store.tags,
            read_history=lambda: stages.history(store, round_),
            mc_samples=parts.acquisition.mc_samples,
            neighbours=self.neighbours,
            chunk_size=parts.selection.chunk_size,
        )

    def candidates(self) -> np.ndarray:
        """Unlabelled pool items, before filters. On a platform, an item whose label is not trusted yet (still
        in review, or sent back for relabelling) is in annotators' hands: neither labelled nor a candidate."""
        labeled, _ = self.store.labeled()
        free = np.setdiff1d(self.store.split_indices("pool"), labeled, assume_unique=True)
        pending = self.parts.data.extra.get("unconfirmed_label")
        if pending is not None and len(free):
            free = free[np.asarray(pending)[free] < 0]
        return free

    def screened(self, round_: int) -> tuple[np.ndarray, list[Any]]:
        """The round's candidates that pass the filters, and what each filter removed; computed once per round
        (the stop policy and the score stage both ask)."""
        if round_ not in self._screened:
            self._screened = {round_: self.parts.filters.screen(self.candidates(), self.view(round_))}
        return self._screened[round_]

    def cost_column(self) -> np.ndarray | None:
        """``selection.cost`` over every item: a computed metric, or a per-item column of the source."""
        key = self.parts.selection.cost
        if key is None:
            return None
        stored = self.store.get_array(f"metrics/{key}")
        return stored if stored is not None else np.asarray(self.parts.data.extra[key], dtype=np.float64)

    # --- the stages ------------------------------------------------------------------------------------------
    def embed_and_measure(self, round_: int) -> None:
        parts = self.parts
        if parts.embeddings.needed:
            self.stage(round_, "embed", lambda: stages.embed(parts.embeddings, parts.data.images, self.compute))
        if parts.metrics:
            labeled, _ = self.store.labeled()
            unlabeled = np.setdiff1d(self.store.split_indices("pool"), labeled)
            self.stage(round_, "metrics", lambda: stages.measure(
                parts.metrics, parts.data.images, parts.data.item_ids, parts.data.n_classes,
                parts.embeddings.static(), unlabeled, stage_rng(parts.seed, GLOBAL_ROUND, "metrics"),
                original=parts.data.original, neighbours=self.neighbours, compute=self.compute,
                shard_items=parts.compute.shard_items,
            ))
            artifacts.write_item_metrics(self.store, self.run_dir, [m.name for m in parts.metrics])

    def draw_stop_set(self) -> None:
        """The stabilizing-predictions rule's fixed unlabelled items, drawn once (``loop.stop_set``)."""
        size = self.parts.loop.stop_set
        if size:
            self.stage(GLOBAL_ROUND, "stop_set", lambda: stages.draw_stop_set(
                self.candidates(), size, stage_rng(self.parts.seed, GLOBAL_ROUND, "stop_set")
            ))

    def train(self, round_: int) -> None:
        def work() -> stages.Writer:
            indices, labels = self.store.labeled()
            if len(indices) == 0:
                return lambda tx: None
            model = self.parts.new_model(stage_seed(self.parts.seed, round_, "train"))
            images = self.model_inputs()
            write = stages.train(model, images[indices], labels, round_, self.parts.model_label,
                                 unlabeled=lambda: images[self.candidates()], previous=lambda: self.warm_model(round_))
            self.models = {round_: model}
            return write

        self.stage(round_, "train", work)

    def warm_model(self, round_: int) -> Any | None:
        """The previous round's model, for a model that continues from it (None: none was trained)."""
        blob = self.store.get_blob(stages.warm_blob(round_ - 1))
        return None if blob is None else pickle.loads(blob)

    def audit(self, round_: int) -> None:
        """Label-error detection on the labelled items (with ``audit`` configured); ``label_issues.csv``."""
        parts, audit = self.parts, self.parts.audit
        if audit is None:
            return

        def work() -> stages.Writer:
            indices, labels = self.store.labeled()
            seed = stage_seed(parts.seed, round_, "audit")
            return stages.audit(
                round_, self.model_inputs(), indices, labels, lambda: parts.new_model(seed), audit.folds, seed,
                audit.function, audit.label, audit.min_labels,
            )

        self.stage(round_, "audit", work)
        artifacts.write_label_issues_csv(self.store, self.run_dir, list(parts.data.class_names))

    def evaluate(self, round_: int, figures: Callable[[int], dict[str, Any]]) -> None:
        """Test accuracy and the stop-set agreement; ``figures(round_)`` adds what the labeller measures."""
        store = self.store
        test = store.split_indices("test")
        stop_set = store.get_array("stop_set/indices")
        previous = store.get_array(f"stop/{round_ - 1:03d}") if round_ > 0 else None
        self.stage(round_, "evaluate", lambda: stages.evaluate(
            self.view(round_), test, np.asarray(self.parts.data.labels),
            {**self.audit_figures(round_), **figures(round_)}, stop_set, previous,
        ))

    def audit_figures(self, round_: int) -> dict[str, Any]:
        """What the round's audit found; where the labeller knows the truth (simulation), how well: the wrong
        labels among the labelled items, and the precision and recall of the flagged ones."""
        if self.parts.audit is None:
            return {}
        store = self.store
        flagged = {row[1] for row in store.label_issues(round_)}
        figures: dict[str, Any] = {"label_issues": len(flagged), "n_relabeled": store.relabel_count(before=round_)}
        if self.parts.labeller.knows_truth:
            indices, labels = store.labeled()
            wrong = set(indices[labels != store.truths(indices)].tolist())
            found = len(flagged & wrong)
            figures.update(
                wrong_labels=len(wrong),
                issue_precision=found / len(flagged) if flagged else None,
                issue_recall=found / len(wrong) if wrong else None,
            )
        return figures

    def relabel_picks(self, round_: int) -> tuple[np.ndarray, np.ndarray]:
        """The round's top label suspects (index, score), at most ``selection.relabel_share`` of the budget:
        still labelled, and never sent back before (an annotator who looked again has the last word)."""
        n = self.parts.selection.relabels
        if n == 0 or self.parts.audit is None:
            return np.zeros(0, np.int64), np.zeros(0)
        labelled = set(self.store.labeled()[0].tolist())
        before = set(self.store.relabeled_before(round_).tolist())
        rows = [(idx, score) for _, idx, _, _, score in self.store.label_issues(round_)
                if idx in labelled and idx not in before][:n]
        return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float64)

    def score_and_select(self, round_: int) -> None:
        parts = self.parts
        relabel = self.relabel_picks(round_)
        # Relabels take their part of the budget; what they leave is spent on new labels.
        budget = parts.selection.budget - len(relabel[0])

        def score() -> stages.Writer:
            rng = stage_rng(parts.seed, round_, "score")
            view = self.view(round_)
            unlabelled = self.candidates()
            candidates, removals = self.screened(round_)
            passed = len(candidates)
            subset = parts.selection.pool_subset
            if subset and len(candidates) > subset:
                candidates = np.sort(rng.choice(candidates, size=subset, replace=False))
            screened = stages.screening_record(len(unlabelled), passed, len(candidates), removals,
                                               parts.report.removed_per_filter)
            return stages.score(
                view, candidates, parts.acquisition, budget, parts.selection.chunk_size,
                "predicted" in parts.policy.inputs, rng, screened, self.compute, parts.compute.shard_items,
            )

        self.stage(round_, "score", score)
        self.stage(round_, "select", lambda: stages.select(
            round_, self.store, parts.policy.function, parts.policy.inputs, budget,
            self.cost_column(), parts.selection.tag, relabel if parts.audit is not None else None,
        ))
        artifacts.write_selection_csv(self.store, self.run_dir, round_)
        if parts.selection.relabels:
            artifacts.write_relabel_csv(self.store, self.run_dir, round_)

    # --- the end -------------------------------------------------------------------------------------------
    def finish(self, stopped: str, **extra: Any) -> dict[str, Any]:
        """Every file of the run directory from the store; ``extra`` joins the summary (the labeller's facts)."""
        parts = self.parts
        rows = artifacts.write_metrics_jsonl(self.store, self.run_dir)
        if parts.metrics:
            artifacts.write_item_metrics(self.store, self.run_dir, [m.name for m in parts.metrics])
        title = f"{parts.project_name} · {parts.acquisition.name} · seed {parts.seed}"
        artifacts.write_learning_curve(rows, self.run_dir / "learning_curve.png", title, parts.loop.target_accuracy)
        summary = summarize(rows, parts, stopped)
        summary["config_sha256"] = self.store.get_meta("config_sha256")
        summary["runner_version"] = self.store.get_meta("runner_version")
        summary["tags"] = artifacts.write_tags_csv(self.store, self.run_dir)
        summary["environment"] = environment.describe()
        summary.update(extra)
        summary["resources"] = self.resources()
        artifacts.write_json(self.run_dir / "summary.json", summary)
        html_report.write_run_report(self.store, self.run_dir, parts, summary, rows)
        if not self.store.is_done(GLOBAL_ROUND, "finish"):
            with self.store.transaction() as tx:
                tx.mark_done(GLOBAL_ROUND, "finish", 0.0)
        return summary

    def resources(self) -> dict[str, Any]:
        """What this invocation measured (not a property of the run: a resumed run measures only its part)."""
        self.memory.stop()
        found: dict[str, Any] = {
            "compute": self.compute.name,
            "peak_rss_mib": self.memory.overall,
            "stages": self.stage_resources,
        }
        workers = self.compute.worker_peak_rss_mib()
        if workers is not None:
            found["worker_peak_rss_mib"] = workers
        recalls = self.neighbours.recalls()
        if recalls:
            found["neighbour_indexes"] = recalls
        return found


def summarize(rows: list[dict[str, Any]], parts: Parts, stopped: str) -> dict[str, Any]:
    evaluated = [r for r in rows if r["test_accuracy"] is not None]
    target = parts.loop.target_accuracy
    reached = [r["n_labeled"] for r in evaluated if target is not None and r["test_accuracy"] >= target]
    seconds = sum(sum(r["seconds"].values()) for r in rows)
    stable = stable_rounds(rows, parts.loop)
    by_round = {r["round"]: r for r in rows}
    return {
        "project": parts.project_name,
        "acquisition": parts.acquisition.name,
        "model": parts.model_label,
        "seed": parts.seed,
        "rounds_evaluated": len(rows),
        "n_labeled": rows[-1]["n_labeled"] if rows else 0,
        "final_test_accuracy": evaluated[-1]["test_accuracy"] if evaluated else None,
        "best_test_accuracy": max(r["test_accuracy"] for r in evaluated) if evaluated else None,
        "target_accuracy": target,
        "labels_to_target": reached[0] if reached else None,
        "stopped": stopped,
        "stage_seconds_total": round(seconds, 3),
        # Where the stabilizing-predictions rule first held (also when it only reports: stop_when_stable=false).
        "stable_at_labels": by_round[stable[0]]["n_labeled"] if stable else None,
    }

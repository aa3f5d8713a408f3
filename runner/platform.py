"""Human-in-the-loop rounds on a labelling platform (``loop.mode: human``).

One invocation is one step of one round, in a fixed project directory whose store carries the state:

1. pull: items new on the platform join the store; labels that annotators added (or changed, or removed)
   since the last invocation replace what the store knew. Labels pulled at the start of round r are
   recorded as acquired in round r-1 (the round whose actions led to them; -1 before round 0).
2. train, evaluate, score, select: the loop's own stages. Evaluation uses the items of the ``test`` split
   that have a label on the platform (``project.source.test_fraction`` holds a fixed share of items out by
   their data hash); with none, the accuracy is n/a.
3. plan: ``act.function`` builds the round's action records from the selection and the platform state and
   writes ``actions/round_NNN.json`` (see ``runner/plan_file.py``).
4. act: a dry run (the default) prints the plan and stops; the round stays open and is planned again from
   scratch if labels arrive before it is applied. ``act.apply=true`` applies it (tags go to the store,
   the rest to the platform), records every outcome in the file, and closes the round once everything is
   applied; a partial failure exits 1 and the next ``act.apply=true`` finishes the rest.
Only the project's identity (source, project, classification, seed) must stay the same between
invocations; budget, acquisition, filters and actions may change from round to round.

The platform is what ``project.source`` creates: any object with the :class:`Platform` interface. Reading it
changes nothing on the platform; only ``act.apply=true`` calls its ``apply``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from omegaconf import OmegaConf

from plugins.files import atomic_write_text
from plugins.sources.dataset import Dataset
from runner import artifacts, plan_file
from runner.acquire import Acquisition
from runner.candidates import CandidateFilter
from runner.errors import ConfigError, RunnerError
from runner.loop import GLOBAL_ROUND, Run, check_selection
from runner.plugins import instantiate_node as _instantiate
from runner.quality import Embeddings
from runner.store import Store

log = logging.getLogger("runner")

IDENTITY_SOURCE_KEYS = ("_target_", "project_hash", "path", "classification", "domain")


@runtime_checkable
class Platform(Protocol):
    """A labelling platform project, as ``project.source`` returns it in ``loop.mode: human``."""

    name: str

    def read(self) -> Dataset:
        """Items (ids, images), current labels (-1 where none), split, and per-item ``extra`` columns
        (``title``, ``stage``, ...). Never writes to the platform."""
        ...

    def stages(self) -> tuple[str | None, set[str]]:
        """The first annotation stage and the final stage titles."""
        ...

    def apply(self, records: list[dict], checkpoint: Callable[[], None]) -> None:
        """Apply the platform records of a plan in place (``status``, ``error``), calling ``checkpoint``
        after each batch."""
        ...


def is_human(config: dict) -> bool:
    return config.get("loop", {}).get("mode", "simulate") == "human"


def project_identity(config: dict) -> str:
    """What must not change between invocations on one project directory."""
    source = config["project"]["source"]
    kept = {k: source.get(k) for k in IDENTITY_SOURCE_KEYS if k in source}
    return json.dumps(
        {"name": config["project"]["name"], "source": kept, "seed": config["seed"]}, sort_keys=True
    )


def open_platform_run(config: dict, run_dir: Path) -> PlatformRun:
    """Open (or create) the project directory's store, then read the platform and align it to the store."""
    from runner import __version__
    from runner.config import config_sha256

    acquisition = Acquisition.from_config(config["acquisition"])
    run_dir.mkdir(parents=True, exist_ok=True)
    store = Store(run_dir / "state.sqlite")
    identity = project_identity(config)
    recorded = store.get_meta("platform_identity")
    if recorded is not None and recorded != identity:
        store.close()
        raise ConfigError(
            f"{run_dir} belongs to another project ({recorded}); use a new hydra.run.dir for this one"
        )
    try:
        platform = _instantiate(config["project"]["source"], f"project '{config['project']['name']}' source")
        if not isinstance(platform, Platform):
            raise ConfigError(
                f"project '{config['project']['name']}' is not a platform project: loop.mode=human needs a "
                "source that returns a platform (name, read, stages, apply), not a data set"
            )
        data = align(platform.read(), store.item_ids(), run_dir)
        known = store.get_meta("class_names")
        if known is not None and json.loads(known) != list(data.class_names):
            raise ConfigError(
                f"the classes of project '{config['project']['name']}' changed since {run_dir} began"
            )
    except BaseException:
        store.close()
        raise
    if recorded is None:
        with store.transaction() as tx:
            tx.set_meta("platform_identity", identity)
            tx.set_meta("config_sha256", config_sha256(config))
            tx.set_meta("runner_version", __version__)
            tx.set_meta("class_names", json.dumps(list(data.class_names)))
            tx.set_meta("n_classes", str(data.n_classes))
    try:
        embeddings = Embeddings.from_config(config, acquisition)
        filters = CandidateFilter.from_config(config, data)
        check_selection(config, acquisition)
    except BaseException:
        store.close()
        raise
    embeddings.images = data.images
    embeddings.load = lambda: store.get_array("embeddings/static")
    atomic_write_text(run_dir / "config.resolved.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))
    return PlatformRun(config, run_dir, store, data, acquisition, embeddings, filters, platform=platform)


def align(data: Dataset, stored_ids: list[str], run_dir: Path) -> Dataset:
    """``data`` reordered so that item i is the store's item i; items new on the platform come last."""
    ids = [str(i) for i in data.item_ids]
    position = {item: i for i, item in enumerate(ids)}
    gone = [item for item in stored_ids if item not in position]
    if gone:
        raise RunnerError(
            f"{len(gone)} items recorded in {run_dir} are no longer in the project (first: {gone[0]}); "
            "start a new project directory"
        )
    stored = set(stored_ids)
    order = np.array(
        [position[i] for i in stored_ids] + [i for i, item in enumerate(ids) if item not in stored],
        dtype=np.int64,
    )
    extra = {
        k: v[order] if isinstance(v, np.ndarray) and len(v) == len(ids) else v for k, v in data.extra.items()
    }
    split = None if data.split is None else np.asarray(data.split)[order]
    return Dataset(
        np.asarray(ids)[order],
        data.images[order],
        np.asarray(data.labels)[order],
        data.class_names,
        split,
        extra,
    )


def actions_path(run_dir: Path, round_: int) -> Path:
    return run_dir / "actions" / f"round_{round_:03d}.json"


@dataclass
class PlatformRun(Run):
    """The loop's stages, one round per invocation, with labels from and actions to the platform."""

    platform: Any = None  # the Platform that open_platform_run read (a default, as it follows Run's fields)

    def current_round(self) -> int:
        round_ = 0
        while self.store.is_done(round_, "act"):
            round_ += 1
        return round_

    # --- the step ---------------------------------------------------------------------------------------
    def execute(self) -> dict:
        round_ = self.current_round()
        changed = self.pull(round_)
        if round_ >= int(self.config["loop"]["rounds"]):
            log.info(f"all {round_} rounds of loop.rounds are done; raise loop.rounds to go on")
            return self.finish("rounds")
        path = actions_path(self.run_dir, round_)
        record = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        applied_any = record is not None and any(r["status"] == "applied" for r in record["records"])
        if changed and self.store.is_done(round_, "train") and not applied_any:
            log.info(f"round {round_} was planned before these labels arrived; planning it again")
            with self.store.transaction() as tx:
                tx.forget_round(round_)
            path.unlink(missing_ok=True)
            record = None
        # Items can join the project between invocations, so item-level embeddings and metrics are per round.
        if self.embeddings.needs_static:
            self.stage(round_, "embed", self.do_embed)
        if self.config["metrics"].get("names"):
            self.stage(round_, "metrics", self.do_metrics)
            artifacts.write_item_metrics(self.store, self.run_dir, self.config["metrics"]["names"])
        self.stage(round_, "train", lambda: self.do_train(round_))
        self.stage(round_, "evaluate", lambda: self.do_evaluate(round_))
        artifacts.write_metrics_jsonl(self.store, self.run_dir)
        self._report(round_)
        if record is None:
            if len(self.filtered_candidates(round_)) == 0:
                log.info("no unlabelled candidates are left (after filters); nothing to select")
                return self.finish("pool_exhausted")
            self.stage(round_, "score", lambda: self.do_score(round_))
            self.stage(round_, "select", lambda: self.do_select(round_))
            artifacts.write_selection_csv(self.store, self.run_dir, round_)
            record = self.plan_round(round_)
            self.save_record(record)
        apply = bool(self.config["act"].get("apply", False))
        show = int(self.config["act"].get("show", 10))
        log.info(f"round {round_} plan ({path.relative_to(self.run_dir)}):")
        for line in plan_file.describe(record["records"], show):
            log.info(f"  {line}")
        if not apply:
            log.info("dry run: nothing was changed; run again with act.apply=true to apply this plan")
            return self.finish("dry_run")
        self.apply_round(round_, record)
        summary = self.finish("applied" if record["status"] == "applied" else "partial")
        if record["status"] != "applied":
            failed = sum(r["status"] == "failed" for r in record["records"])
            raise RunnerError(
                f"{failed} of {len(record['records'])} actions of round {round_} failed (see {path}); "
                "run again with act.apply=true to finish the rest"
            )
        return summary

    # --- pull ---------------------------------------------------------------------------------------------
    def pull(self, round_: int) -> bool:
        """Bring new items and the platform's current labels into the store; True if any label changed."""
        n_stored = len(self.store.item_ids())
        n = len(self.data.item_ids)
        split = np.asarray(self.data.split if self.data.split is not None else ["pool"] * n).astype(str)
        labels = np.asarray(self.data.labels)
        known_idx, known_labels = self.store.labeled()
        known = dict(zip(known_idx.tolist(), known_labels.tolist(), strict=True))
        # Test items' labels are read from the platform at evaluation and never enter training.
        platform = {i: int(labels[i]) for i in np.flatnonzero((split == "pool") & (labels >= 0)).tolist()}
        new = sorted(set(platform) - set(known))
        changed = sorted(i for i in set(platform) & set(known) if platform[i] != known[i])
        removed = sorted(set(known) - set(platform))
        acquired = round_ - 1 if round_ > 0 else GLOBAL_ROUND

        with self.store.transaction() as tx:
            if n > n_stored:
                tx.add_items(
                    [str(i) for i in self.data.item_ids[n_stored:]],
                    list(split[n_stored:]),
                    [None] * (n - n_stored),
                    start=n_stored,
                )
            if new:
                tx.add_labels(np.array(new), np.array([platform[i] for i in new]), acquired)
            if changed:
                tx.replace_labels(np.array(changed), np.array([platform[i] for i in changed]))
            if removed:
                tx.delete_labels(np.array(removed))
        parts = [f"{len(new)} new labels"]
        if n > n_stored:
            parts.insert(0, f"{n - n_stored} new items")
        if changed or removed:
            parts.append(f"{len(changed)} changed, {len(removed)} removed")
        log.info(f"pulled from {self.platform.name}: {', '.join(parts)}")
        return bool(new or changed or removed)

    # --- stages that differ from simulation
    # ------------------------------------------------------------------
    def do_evaluate(self, round_: int):
        labelled, _ = self.store.labeled()
        test = self.store.split_indices("test")
        known = test[np.asarray(self.data.labels)[test] >= 0]
        model = self.model(round_)
        accuracy = None
        if model is not None and len(known):
            probs = self.predict_probs(model, known)
            accuracy = float((probs.argmax(axis=1) == self.data.labels[known]).mean())
        extra = {"n_test_labeled": int(len(known)), "n_candidates": int(len(self.filtered_candidates(round_)))}
        return lambda tx: tx.record_round(round_, len(labelled), accuracy, extra)

    def filtered_candidates(self, round_: int) -> np.ndarray:
        """Unlabelled pool items that pass the configured filters (stages, tags, metrics, ...)."""
        return self.filters.apply(self.candidates(), self.model(round_), self)

    # --- plan and act ---------------------------------------------------------------------------------------
    def item(self, idx: int, rank: int | None = None) -> dict:
        """What the planner knows of an item: its id, rank, and every per-item column the platform gave."""
        n = len(self.data.item_ids)
        columns = {
            key: values[idx].item() if isinstance(values[idx], np.generic) else values[idx]
            for key, values in self.data.extra.items()
            if isinstance(values, np.ndarray) and len(values) == n
        }
        return {**columns, "data_hash": str(self.data.item_ids[idx]), "rank": rank}

    def plan_round(self, round_: int) -> dict:
        selected = self.store.selected_indices(round_)
        candidates = self.filtered_candidates(round_)
        rest = np.setdiff1d(candidates, selected)
        labelled, _ = self.store.labeled()
        parked = np.setdiff1d(self.store.tagged("parked"), labelled)
        _, final = self.platform.stages()
        act = self.config["act"]
        build = _instantiate(act["function"], f"act '{act['name']}'", _partial_=True)
        try:
            records = build(
                selected=[self.item(i, rank) for rank, i in enumerate(selected, 1)],
                rest=[self.item(i) for i in rest],
                parked=[self.item(i) for i in parked],
                final_stages=final,
                round_=round_,
            )
        except ValueError as exc:
            raise ConfigError(f"act '{act['name']}': {exc}") from None
        return {
            "round": round_,
            "project": self.config["project"]["name"],
            "act": act["name"],
            "function": {k: v for k, v in act["function"].items() if k != "_target_"},
            "status": "planned",
            "counts": plan_file.counts(records),
            "records": records,
        }

    def save_record(self, record: dict) -> None:
        record["counts"] = plan_file.counts(record["records"])
        path = actions_path(self.run_dir, record["round"])
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")

    def apply_round(self, round_: int, record: dict) -> None:
        local = [r for r in record["records"] if plan_file.is_local(r) and r["status"] != "applied"]
        remote = [r for r in record["records"] if not plan_file.is_local(r)]
        self.platform.apply(remote, checkpoint=lambda: self.save_record(record))
        self.save_record(record)
        index = {item: i for i, item in enumerate(self.store.item_ids())}
        with self.store.transaction() as tx:
            # Tags follow the platform: an item is tagged parked only once it really is in Complete.
            platform_failed = {r["data_hash"] for r in remote if r["status"] != "applied"}
            for r in local:
                if r["data_hash"] in platform_failed:
                    continue
                idx = np.array([index[r["data_hash"]]])
                if r["action"] == "tag":
                    tx.add_tags(idx, str(r["value"]), round_)
                else:
                    tx.remove_tags(idx, str(r["value"]))
                r.update(status="applied", error=None)
            done = all(r["status"] == "applied" for r in record["records"])
            record["status"] = "applied" if done else "partial"
            if done:
                tx.mark_done(round_, "act", 0.0)
        self.save_record(record)
        tally = plan_file.counts(record["records"])
        log.info(
            "applied: "
            + "; ".join(f"{a} " + ", ".join(f"{k} {v}" for k, v in s.items()) for a, s in tally.items())
        )

    # --- reports
    # ----------------------------------------------------------------------------------------------
    def _report(self, round_: int) -> None:
        row = next(r for r in self.store.rounds() if r["round"] == round_)
        accuracy = "n/a" if row["test_accuracy"] is None else f"{row['test_accuracy']:.4f}"
        log.info(
            f"round {round_} | labelled {row['n_labeled']} | candidates {row.get('n_candidates')} | "
            f"test accuracy {accuracy} on {row.get('n_test_labeled', 0)} labelled test items"
        )

    def finish(self, stopped: str) -> dict:
        summary = super().finish(stopped)
        summary.update(mode="human", open_round=self.current_round())
        artifacts.write_json(self.run_dir / "summary.json", summary)
        if summary["tags"]:
            log.info("tags: " + ", ".join(f"{t} {n}" for t, n in summary["tags"].items()))
        return summary

"""The labeller of human-in-the-loop rounds on a labelling platform (``loop.mode: human``).

One invocation works on the open round of a fixed project directory, whose store carries the state:

1. pull (:meth:`PlatformLabeller.start`): items new on the platform join the store; labels that annotators
   added (or changed, or removed) since the last invocation replace what the store knew. Labels pulled at the
   start of round r are recorded as acquired in round r-1 (the round whose actions led to them; -1 before
   round 0). Only trusted labels count (the platform says which); an item whose label is not trusted yet is
   neither trained on nor a candidate. Items move into the ``test`` split as the platform says. A round that was
   planned but not applied before new labels arrived is planned again from scratch.
2. the round driver's stages (``runner.rounds``): train, audit, evaluate, stop?, score, select. Evaluation uses
   the labelled items of the ``test`` split; with none, the accuracy is n/a.
3. label (:meth:`PlatformLabeller.label`): the act function plans the round's action records from the selection,
   the label suspects sent back (``selection.relabel_share``) and the platform state, into
   ``actions/round_NNN.json`` (see ``runner/plan_file.py``). A dry run (the default) prints the plan and stops;
   the round stays open. ``act.apply=true`` applies it (tags go to the store, the rest to the platform) as the
   round's ``act`` stage, records every outcome in the file, and closes the round once everything is applied; a
   partial failure exits 1 and the next ``act.apply=true`` finishes the rest.

Only the project's identity (what the platform names as identifying, plus the project name and seed) must stay
the same between invocations; budget, acquisition, filters and actions may change from round to round.

The platform is what ``project.source`` creates: any object with the :class:`Platform` interface. Reading it
changes nothing on the platform; only ``act.apply=true`` calls its ``apply``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from plugins.files import atomic_write_text
from plugins.sources.dataset import Dataset
from runner import __version__, plan_file, stages
from runner.errors import ConfigError, RunnerError
from runner.labellers import Session
from runner.rundir import ConfigRecord, write_resolved_config
from runner.store import GLOBAL_ROUND, Store, read_meta

log = logging.getLogger("runner")
# A record of a plan, or an item as the planner sees it (see runner/plan_file.py).
Record = dict[str, Any]


@runtime_checkable
class Platform(Protocol):
    """A labelling platform project, as ``project.source`` returns it in ``loop.mode: human``."""

    name: str
    # The keys of its ``project.source`` config that say which project it is: they may not change between
    # invocations on one project directory (the others, such as retries or image size, may).
    identity_keys: tuple[str, ...]

    def read(self) -> Dataset:
        """Items (ids, images), current trusted labels (-1 where none), split, and per-item ``extra`` columns
        (``title``, ``stage``, and ``unconfirmed_label``: the class of a label not trusted yet, which is neither
        trained on nor a candidate, -1 where none). Never writes to the platform."""
        ...

    def workflow(self) -> dict[str, dict[str, Any]]:
        """The workflow's stages: title -> ``{"kind": ..., ...}`` (``kind`` ``DONE`` for a final stage), in
        order."""
        ...

    def apply(self, records: list[Record], checkpoint: Callable[[], None]) -> None:
        """Apply the platform records of a plan in place (``status``, ``error``), calling ``checkpoint``
        after each batch."""
        ...


def project_identity(name: str, source: Mapping[str, Any], identity_keys: tuple[str, ...], seed: int) -> str:
    """What must not change between invocations on one project directory: the project's name and seed, and the
    ``project.source`` keys the platform names (``_target_`` always)."""
    kept = {k: source.get(k) for k in ("_target_", *identity_keys) if k in source}
    return json.dumps({"name": name, "source": kept, "seed": seed}, sort_keys=True)


def check_identity_readonly(config: dict[str, Any], run_dir: Path) -> None:
    """Before the platform is opened: refuse a project directory whose recorded identity another project's config
    contradicts (the project name, the seed, and the source keys it was recorded with)."""
    recorded = read_meta(run_dir / "state.sqlite", "platform_identity")
    if recorded is None:
        return
    try:
        found = json.loads(recorded)
        keys = tuple(k for k in found["source"] if k != "_target_")
    except (ValueError, KeyError, TypeError):
        keys = ()
    check_project_dir(project_identity(str(config["project"]["name"]), config["project"]["source"], keys,
                                       int(config["seed"])), run_dir)


def check_project_dir(identity: str, run_dir: Path) -> None:
    """Refuse a project directory of another project, reading its store only."""
    recorded = read_meta(run_dir / "state.sqlite", "platform_identity")
    if recorded is not None and recorded != identity:
        raise ConfigError(f"{run_dir} belongs to another project ({recorded}); use a new hydra.run.dir for this one")


@dataclass(frozen=True)
class Planner:
    """The act function of a platform (``act.function``) and how its plans are shown and applied."""

    name: str  # act.name
    label: str  # how messages name it
    function: Callable[..., list[Record]]
    arguments: dict[str, Any]  # the act function's configured arguments, recorded in each plan file
    apply: bool  # act.apply
    show: int  # act.show: records listed per action in the printed plan


class PlatformLabeller:
    """Annotators on a labelling platform: one round per invocation (see the module docstring)."""

    knows_truth = False
    items_change = True

    def __init__(self, platform: Platform, planner: Planner, identity: str, record: ConfigRecord,
                 project_name: str) -> None:
        self.platform = platform
        self.planner = planner
        self.identity = identity
        self.record = record
        self.project_name = project_name
        self.failure: str | None = None  # why the plan was applied only in part

    # --- before the rounds --------------------------------------------------------------------------------
    def check_act(self) -> None:
        """The act settings against the platform's workflow (stages, pathways), before any stage runs."""
        self.plan_records([], [], [], [], 0)

    def check(self, run_dir: Path) -> None:
        check_project_dir(self.identity, run_dir)

    def claim(self, store: Store, run_dir: Path, data: Dataset) -> Dataset:
        return claim_project(store, run_dir, data, self.identity, self.record, self.project_name)

    def start(self, session: Session) -> int:
        """Pull; the open round, planned again from scratch when labels arrived before its plan was applied."""
        store, run_dir = session.store, session.run_dir
        round_ = current_round(store)
        changed = pull(session, round_, self.platform.name)
        record = read_plan(run_dir, round_)
        applied_any = record is not None and any(r["status"] == "applied" for r in record["records"])
        if changed and store.is_done(round_, "train") and not applied_any:
            log.info(f"round {round_} was planned before these labels arrived; planning it again")
            with store.transaction() as tx:
                tx.forget_round(round_)
            actions_path(run_dir, round_).unlink(missing_ok=True)
        return round_

    # --- a round ------------------------------------------------------------------------------------------
    def round_figures(self, session: Session, round_: int) -> dict[str, Any]:
        return project_round_figures(session, round_)

    def label(self, session: Session, round_: int) -> str | None:
        """Plan the round (once), show the plan, and apply it when asked to; why the invocation ends here."""
        run_dir = session.run_dir
        record = read_plan(run_dir, round_)
        if record is None:
            record = self.plan_round(session, round_)
            save_plan(run_dir, record)
        log.info(f"round {round_} plan ({actions_path(run_dir, round_).relative_to(run_dir)}):")
        for line in plan_file.describe(record["records"], self.planner.show):
            log.info(f"  {line}")
        if not self.planner.apply:
            log.info("dry run: nothing was changed; run again with act.apply=true to apply this plan")
            return "dry_run"
        session.stage(round_, "act", lambda: self.apply_round(session, round_, record))
        save_plan(run_dir, record)
        tally = plan_file.counts(record["records"])
        log.info("applied: " + "; ".join(f"{a} " + ", ".join(f"{k} {v}" for k, v in s.items())
                                         for a, s in tally.items()))
        if record["status"] == "applied":
            return "applied"
        failed = sum(r["status"] == "failed" for r in record["records"])
        self.failure = (
            f"{failed} of {len(record['records'])} actions of round {round_} failed (see "
            f"{actions_path(run_dir, round_)}); run again with act.apply=true to finish the rest"
        )
        return "partial"

    def plan_records(self, selected: list[Record], rest: list[Record], parked: list[Record],
                     suspects: list[Record], round_: int) -> list[Record]:
        try:
            return self.planner.function(
                selected=selected, rest=rest, parked=parked, suspects=suspects, workflow=self.platform.workflow(),
                round_=round_,
            )
        except ValueError as exc:
            raise ConfigError(f"{self.planner.label}: {exc}") from None

    def plan_round(self, session: Session, round_: int) -> dict[str, Any]:
        """The round's records: the selection, the suspects sent back, and every other unlabelled item (the
        candidates before filters: what annotators would otherwise spend time on)."""
        store, data = session.store, session.data
        selected = store.selected_indices(round_)
        rest = np.setdiff1d(session.candidates(), selected)
        labelled, _ = store.labeled()
        parked = np.setdiff1d(store.tagged("parked"), labelled)
        issues = {idx: (given, suggested, score) for _, idx, given, suggested, score in store.label_issues(round_)}
        names = list(data.class_names)
        suspects = []
        for rank, i in enumerate(store.relabel_indices(round_), 1):
            given, suggested, score = issues[int(i)]
            suspects.append({**planned_item(data, i, rank), "given": names[given], "suggested": names[suggested],
                             "score": score})
        tags = store.tags()
        records = self.plan_records(
            [planned_item(data, i, rank, tags) for rank, i in enumerate(selected, 1)],
            [planned_item(data, i) for i in rest],
            [planned_item(data, i) for i in parked],
            suspects,
            round_,
        )
        return {
            "round": round_,
            "project": self.project_name,
            "act": self.planner.name,
            "function": self.planner.arguments,
            "status": "planned",
            "counts": plan_file.counts(records),
            "records": records,
        }

    def apply_round(self, session: Session, round_: int, record: dict[str, Any]) -> stages.Writer:
        """Apply the platform's records (the plan file is saved after each batch); the writer of the tag records
        in the store. The round's ``act`` stage, finished once every record is applied."""
        store, run_dir = session.store, session.run_dir
        local = [r for r in record["records"] if plan_file.is_local(r) and r["status"] != "applied"]
        remote = [r for r in record["records"] if not plan_file.is_local(r)]
        self.platform.apply(remote, lambda: save_plan(run_dir, record))
        save_plan(run_dir, record)
        index = {item: i for i, item in enumerate(store.item_ids())}
        # Tags follow the platform: an item is tagged parked only once it really is in Complete.
        platform_failed = {r["data_hash"] for r in remote if r["status"] != "applied"}
        tagging = [r for r in local if r["data_hash"] not in platform_failed]
        tagged = {id(r) for r in tagging}
        done = all(r["status"] == "applied" for r in record["records"] if id(r) not in tagged)

        def write(tx: Store) -> None:
            for r in tagging:
                idx = np.array([index[r["data_hash"]]])
                if r["action"] == "tag":
                    tx.add_tags(idx, str(r["value"]), round_)
                else:
                    tx.remove_tags(idx, str(r["value"]))
                r.update(status="applied", error=None)
            record["status"] = "applied" if done else "partial"

        return write if done else stages.Unfinished(write)

    # --- after the rounds ---------------------------------------------------------------------------------
    def summary(self, session: Session, stopped: str) -> dict[str, Any]:
        return {"mode": "human", "open_round": current_round(session.store)}

    def conclude(self, session: Session, summary: dict[str, Any]) -> None:
        if summary["tags"]:
            log.info("tags: " + ", ".join(f"{t} {n}" for t, n in summary["tags"].items()))
        if self.failure is not None:
            raise RunnerError(self.failure)


def current_round(store: Store) -> int:
    round_ = 0
    while store.is_done(round_, "act"):
        round_ += 1
    return round_


def project_round_figures(session: Session, round_: int) -> dict[str, Any]:
    """What a round of a project labelled by people records beside its accuracy: the labelled test items it was
    measured on, and the candidates left after the filters."""
    labels = np.asarray(session.data.labels)
    return {
        "n_test_labeled": int((labels[session.store.split_indices("test")] >= 0).sum()),
        "n_candidates": int(len(session.screened(round_)[0])),
    }


def claim_project(store: Store, run_dir: Path, data: Dataset, identity: str, record: ConfigRecord,
                  project_name: str) -> Dataset:
    """A project directory's claim, where each invocation is one round of a project whose items can grow: the
    data in the store's order (new items last), its classes unchanged since the directory began, and on the first
    invocation the project's identity, config and classes recorded."""
    aligned = align(data, store.item_ids(), run_dir)
    known = store.get_meta("class_names")
    if known is not None and json.loads(known) != list(aligned.class_names):
        raise ConfigError(f"the classes of project '{project_name}' changed since {run_dir} began (then: "
                          f"{', '.join(json.loads(known))}; now: {', '.join(aligned.class_names)})")
    if store.get_meta("platform_identity") is None:
        with store.transaction() as tx:
            tx.set_meta("platform_identity", identity)
            tx.set_meta("config_sha256", record.sha256)
            tx.set_meta("runner_version", __version__)
            tx.set_meta("class_names", json.dumps(list(aligned.class_names)))
            tx.set_meta("n_classes", str(aligned.n_classes))
    write_resolved_config(run_dir, record)
    return aligned


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
    if np.array_equal(order, np.arange(len(ids))):
        # Already in the store's order (a new project, or no item added since): indexing would copy every image,
        # and read an on-disk pool whole into memory.
        return data
    extra = {
        k: v[order] if isinstance(v, np.ndarray) and len(v) == len(ids) else v for k, v in data.extra.items()
    }
    split = None if data.split is None else np.asarray(data.split)[order]
    source = data.original
    return dataclasses.replace(
        data,
        item_ids=np.asarray(ids)[order],
        images=data.images[order],
        labels=np.asarray(data.labels)[order],
        split=split,
        extra=extra,
        original=None if source is None else lambda i: source(int(order[i])),
    )


def pull(session: Session, round_: int, platform_name: str) -> bool:
    """Bring new items and the platform's current labels into the store; True if any label changed."""
    store, data = session.store, session.data
    n_stored = len(store.item_ids())
    n = len(data.item_ids)
    split = np.asarray(data.split if data.split is not None else ["pool"] * n).astype(str)
    labels = np.asarray(data.labels)
    moved = np.flatnonzero(store.splits() != split[:n_stored]) if n_stored else np.zeros(0, np.int64)
    known_idx, known_labels = store.labeled()
    known = dict(zip(known_idx.tolist(), known_labels.tolist(), strict=True))
    # Test items' labels are read from the platform at evaluation and never enter training.
    platform = {i: int(labels[i]) for i in np.flatnonzero((split == "pool") & (labels >= 0)).tolist()}
    new = sorted(set(platform) - set(known))
    changed = sorted(i for i in set(platform) & set(known) if platform[i] != known[i])
    removed = sorted(set(known) - set(platform))
    acquired = round_ - 1 if round_ > 0 else GLOBAL_ROUND

    with store.transaction() as tx:
        if n > n_stored:
            tx.add_items(
                [str(i) for i in data.item_ids[n_stored:]], list(split[n_stored:]), [None] * (n - n_stored),
                start=n_stored,
            )
        if new:
            tx.add_labels(np.array(new), np.array([platform[i] for i in new]), acquired)
        if changed:
            tx.replace_labels(np.array(changed), np.array([platform[i] for i in changed]))
        if removed:
            tx.delete_labels(np.array(removed))
        for name in ("pool", "test"):
            tx.set_split(moved[split[moved] == name], name)
    parts = [f"{len(new)} new labels"]
    if n > n_stored:
        parts.insert(0, f"{n - n_stored} new items")
    if changed or removed:
        parts.append(f"{len(changed)} changed, {len(removed)} no longer trusted or gone")
    if len(moved):
        parts.append(f"{int((split[moved] == 'test').sum())} labelled items held out for testing")
    pending = data.extra.get("unconfirmed_label")
    if pending is not None and (np.asarray(pending) >= 0).any():
        parts.append(f"{int((np.asarray(pending) >= 0).sum())} labels not trusted yet (not trained on)")
    log.info(f"pulled from {platform_name}: {', '.join(parts)}")
    return bool(new or changed or removed or len(moved))


def planned_item(data: Dataset, idx: int, rank: int | None = None,
                 tags: dict[int, set[str]] | None = None) -> Record:
    """What the planner knows of an item: its id, rank, its tags in the run store, and every per-item column the
    platform gave."""
    n = len(data.item_ids)
    columns = {
        key: values[idx].item() if isinstance(values[idx], np.generic) else values[idx]
        for key, values in data.extra.items()
        if isinstance(values, np.ndarray) and len(values) == n
    }
    found = sorted((tags or {}).get(int(idx), set()))
    return {**columns, "data_hash": str(data.item_ids[idx]), "rank": rank, "tags": found}


def actions_path(run_dir: Path, round_: int) -> Path:
    return run_dir / "actions" / f"round_{round_:03d}.json"


def read_plan(run_dir: Path, round_: int) -> dict[str, Any] | None:
    path = actions_path(run_dir, round_)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def save_plan(run_dir: Path, record: dict[str, Any]) -> None:
    record["counts"] = plan_file.counts(record["records"])
    path = actions_path(run_dir, record["round"])
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")

"""Human-in-the-loop rounds on a labelling platform (``loop.mode: human``).

One invocation is one step of one round, in a fixed project directory whose store carries the state:

1. pull: items new on the platform join the store; labels that annotators added (or changed, or removed)
   since the last invocation replace what the store knew. Labels pulled at the start of round r are
   recorded as acquired in round r-1 (the round whose actions led to them; -1 before round 0).
   Only trusted labels count (the platform says which: on Encord, those in the final stages unless
   configured); an item whose label is not trusted yet is neither trained on nor a candidate. Items move
   into the ``test`` split as the platform says (a held-out share of trusted labels, or a test stage).
2. train, audit, evaluate, score, select: the loop's own stages. Evaluation uses the labelled items of the
   ``test`` split; with none, the accuracy is n/a. ``loop.target_accuracy`` and the stabilizing-predictions
   rule (``loop.stop_set``) end the loop here: nothing more is selected or planned.
3. plan: ``act.function`` builds the round's action records from the selection, the label suspects sent back
   (``selection.relabel_share``) and the platform state, and writes ``actions/round_NNN.json`` (see
   ``runner/plan_file.py``).
4. act: a dry run (the default) prints the plan and stops; the round stays open and is planned again from
   scratch if labels arrive before it is applied. ``act.apply=true`` applies it (tags go to the store,
   the rest to the platform), records every outcome in the file, and closes the round once everything is
   applied; a partial failure exits 1 and the next ``act.apply=true`` finishes the rest.
Only the project's identity (source, project, classification, seed) must stay the same between
invocations; budget, acquisition, filters and actions may change from round to round.

The platform is what ``project.source`` creates: any object with the :class:`runner.assemble.Platform`
interface. Reading it changes nothing on the platform; only ``act.apply=true`` calls its ``apply``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from plugins.files import atomic_write_text
from plugins.sources.dataset import Dataset
from runner import __version__, artifacts, plan_file
from runner.assemble import Parts, Platform
from runner.config import config_sha256
from runner.errors import ConfigError, RunnerError
from runner.loop import Session, stop_reason
from runner.rundir import write_resolved_config
from runner.store import GLOBAL_ROUND, Store, read_meta

log = logging.getLogger("runner")

IDENTITY_SOURCE_KEYS = ("_target_", "project_hash", "path", "classification", "domain")


def project_identity(config: dict) -> str:
    """What must not change between invocations on one project directory."""
    source = config["project"]["source"]
    kept = {k: source.get(k) for k in IDENTITY_SOURCE_KEYS if k in source}
    return json.dumps(
        {"name": config["project"]["name"], "source": kept, "seed": config["seed"]}, sort_keys=True
    )


def check_project_dir(config: dict, run_dir: Path) -> None:
    """Refuse a project directory of another project before the platform is read (read-only)."""
    recorded = read_meta(run_dir / "state.sqlite", "platform_identity")
    if recorded is not None and recorded != project_identity(config):
        raise ConfigError(f"{run_dir} belongs to another project ({recorded}); use a new hydra.run.dir for this one")


def open_platform_store(parts: Parts, store: Store, run_dir: Path) -> Parts:
    """Check that the project directory belongs to this project; the parts with the data in the store's order."""
    check_project_dir(parts.config, run_dir)
    identity = project_identity(parts.config)
    recorded = store.get_meta("platform_identity")
    data = align(parts.data, store.item_ids(), run_dir)
    known = store.get_meta("class_names")
    if known is not None and json.loads(known) != list(data.class_names):
        raise ConfigError(f"the classes of project '{parts.project_name}' changed since {run_dir} began")
    if recorded is None:
        with store.transaction() as tx:
            tx.set_meta("platform_identity", identity)
            tx.set_meta("config_sha256", config_sha256(parts.config))
            tx.set_meta("runner_version", __version__)
            tx.set_meta("class_names", json.dumps(list(data.class_names)))
            tx.set_meta("n_classes", str(data.n_classes))
    write_resolved_config(run_dir, parts.config)
    return dataclasses.replace(parts, data=data)


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
    source = data.original
    return Dataset(
        np.asarray(ids)[order],
        data.images[order],
        np.asarray(data.labels)[order],
        data.class_names,
        split,
        extra,
        None if source is None else lambda i: source(int(order[i])),
    )


def platform_of(parts: Parts) -> Platform:
    if parts.platform is None:  # assemble gives every loop.mode=human run its platform
        raise RuntimeError("a platform round without a platform")
    return parts.platform


def actions_path(run_dir: Path, round_: int) -> Path:
    return run_dir / "actions" / f"round_{round_:03d}.json"


def current_round(store: Store) -> int:
    round_ = 0
    while store.is_done(round_, "act"):
        round_ += 1
    return round_


# --- the step ---------------------------------------------------------------------------------------------
def human_step(session: Session) -> dict:
    """Pull, then train, evaluate, score, select and plan the open round; apply the plan if asked to."""
    parts, store, run_dir = session.parts, session.store, session.run_dir
    round_ = current_round(store)
    changed = pull(session, round_)
    if round_ >= parts.loop.rounds:
        log.info(f"all {round_} rounds of loop.rounds are done; raise loop.rounds to go on")
        return finish(session, "rounds")
    path = actions_path(run_dir, round_)
    record = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    applied_any = record is not None and any(r["status"] == "applied" for r in record["records"])
    if changed and store.is_done(round_, "train") and not applied_any:
        log.info(f"round {round_} was planned before these labels arrived; planning it again")
        with store.transaction() as tx:
            tx.forget_round(round_)
        path.unlink(missing_ok=True)
        record = None
    # Items can join the project between invocations, so item-level embeddings and metrics are per round.
    session.embed_and_measure(round_)
    session.draw_stop_set()
    session.train(round_)
    session.audit(round_)
    labels = np.asarray(parts.data.labels)
    session.evaluate(round_, extra=lambda: {
        "n_test_labeled": int((labels[store.split_indices("test")] >= 0).sum()),
        "n_candidates": int(len(session.filtered_candidates(round_))),
    })
    artifacts.write_metrics_jsonl(store, run_dir)
    _report(store, round_)
    if record is None:
        reason = stop_reason(session, round_)
        if reason is not None:
            log.info(f"stopping: {STOPPED[reason]}; nothing more is selected (see metrics.jsonl)")
            return finish(session, reason)
        if len(session.filtered_candidates(round_)) == 0:
            log.info("no unlabelled candidates are left (after filters); nothing to select")
            return finish(session, "pool_exhausted")
        session.score_and_select(round_)
        record = plan_round(session, round_)
        save_record(run_dir, record)
    apply, show = bool(parts.config["act"]["apply"]), int(parts.config["act"]["show"])
    log.info(f"round {round_} plan ({path.relative_to(run_dir)}):")
    for line in plan_file.describe(record["records"], show):
        log.info(f"  {line}")
    if not apply:
        log.info("dry run: nothing was changed; run again with act.apply=true to apply this plan")
        return finish(session, "dry_run")
    apply_round(session, round_, record)
    summary = finish(session, "applied" if record["status"] == "applied" else "partial")
    if record["status"] != "applied":
        failed = sum(r["status"] == "failed" for r in record["records"])
        raise RunnerError(
            f"{failed} of {len(record['records'])} actions of round {round_} failed (see {path}); "
            "run again with act.apply=true to finish the rest"
        )
    return summary


# --- pull -------------------------------------------------------------------------------------------------
def pull(session: Session, round_: int) -> bool:
    """Bring new items and the platform's current labels into the store; True if any label changed."""
    store, data = session.store, session.parts.data
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
    log.info(f"pulled from {platform_of(session.parts).name}: {', '.join(parts)}")
    return bool(new or changed or removed or len(moved))


# --- plan and act -----------------------------------------------------------------------------------------
def _item(data: Dataset, idx: int, rank: int | None = None, tags: dict[int, set[str]] | None = None) -> dict:
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


STOPPED = {
    "target_accuracy": "the test accuracy reached loop.target_accuracy",
    "stable_predictions": "successive models agree on the stop set (loop.stop_agreement over loop.stop_window rounds)",
}


def check_act(parts: Parts) -> None:
    """The act settings against the platform's workflow (stages, pathways), before any stage runs."""
    plan_records(parts, [], [], [], [], 0)


def plan_records(parts: Parts, selected: list[dict], rest: list[dict], parked: list[dict], suspects: list[dict],
                 round_: int) -> list[dict]:
    try:
        return parts.act.function(
            selected=selected, rest=rest, parked=parked, suspects=suspects,
            stages=platform_of(parts).stages(), round_=round_,
        )
    except ValueError as exc:
        raise ConfigError(f"{parts.act.label}: {exc}") from None


def plan_round(session: Session, round_: int) -> dict:
    """The round's records: the selection, the suspects sent back, and every other unlabelled item (the
    candidates before filters: what annotators would otherwise spend time on)."""
    parts, store, data = session.parts, session.store, session.parts.data
    selected = store.selected_indices(round_)
    rest = np.setdiff1d(session.candidates(), selected)
    labelled, _ = store.labeled()
    parked = np.setdiff1d(store.tagged("parked"), labelled)
    issues = {idx: (given, suggested, score) for _, idx, given, suggested, score in store.label_issues(round_)}
    names = list(data.class_names)
    suspects = []
    for rank, i in enumerate(store.relabel_indices(round_), 1):
        given, suggested, score = issues[int(i)]
        suspects.append({**_item(data, i, rank), "given": names[given], "suggested": names[suggested],
                         "score": score})
    act = parts.config["act"]
    tags = store.tags()
    records = plan_records(
        parts,
        [_item(data, i, rank, tags) for rank, i in enumerate(selected, 1)],
        [_item(data, i) for i in rest],
        [_item(data, i) for i in parked],
        suspects,
        round_,
    )
    return {
        "round": round_,
        "project": parts.project_name,
        "act": act["name"],
        "function": {k: v for k, v in act["function"].items() if k != "_target_"},
        "status": "planned",
        "counts": plan_file.counts(records),
        "records": records,
    }


def save_record(run_dir: Path, record: dict) -> None:
    record["counts"] = plan_file.counts(record["records"])
    path = actions_path(run_dir, record["round"])
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


def apply_round(session: Session, round_: int, record: dict) -> None:
    store, run_dir = session.store, session.run_dir
    local = [r for r in record["records"] if plan_file.is_local(r) and r["status"] != "applied"]
    remote = [r for r in record["records"] if not plan_file.is_local(r)]
    platform_of(session.parts).apply(remote, checkpoint=lambda: save_record(run_dir, record))
    save_record(run_dir, record)
    index = {item: i for i, item in enumerate(store.item_ids())}
    with store.transaction() as tx:
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
    save_record(run_dir, record)
    tally = plan_file.counts(record["records"])
    log.info(
        "applied: " + "; ".join(f"{a} " + ", ".join(f"{k} {v}" for k, v in s.items()) for a, s in tally.items())
    )


# --- reports ----------------------------------------------------------------------------------------------
def _report(store: Store, round_: int) -> None:
    row = next(r for r in store.rounds() if r["round"] == round_)
    accuracy = "n/a" if row["test_accuracy"] is None else f"{row['test_accuracy']:.4f}"
    log.info(
        f"round {round_} | labelled {row['n_labeled']} | candidates {row.get('n_candidates')} | "
        f"test accuracy {accuracy} on {row.get('n_test_labeled', 0)} labelled test items"
    )


def finish(session: Session, stopped: str) -> dict:
    summary = session.finish(stopped, mode="human", open_round=current_round(session.store))
    if summary["tags"]:
        log.info("tags: " + ", ".join(f"{t} {n}" for t, n in summary["tags"].items()))
    return summary

"""Actions on a labelling platform: a plan of per-item records, then applying it (idempotent, resumable).

A plan is a list of records ``{data_hash, title, action, value, rank, status, error}`` where ``action`` is
``priority`` (value: the task priority, 1.0 = label first), ``reopen`` (back to the first annotation
stage), ``complete`` (to the final stage), ``tag`` or ``untag`` (value: the tag; kept in the run store only).
Building a plan is pure; applying it goes through :class:`plugins.sources.encord_sdk.EncordAdapter`.

``actions`` (any combination):
- ``priority``: the selected items get priorities by rank, 1.0 for the first down to ``priority_floor`` for
  the last; with ``rest_priority`` set, every other candidate gets that priority (lowered).
- ``relabel``: reopen the selected items.
- ``complete``: move the other candidates to the final stage ("out of the way").
- ``park``: Encord Active's documented workaround for the missing task priorities: the other unlabelled
  candidates go to the final stage and are tagged ``parked``; selected items that were parked are reopened.
- ``unpark``: reopen every parked item that still has no label, and drop the tag.
- ``tag``: tag the selected items (``tag``, default ``round_NNN``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

ACTIONS = ("priority", "relabel", "complete", "park", "unpark", "tag")
PARKED = "parked"
PLATFORM_ACTIONS = ("reopen", "complete", "priority")
LOCAL_ACTIONS = ("tag", "untag")
_ORDER = {"reopen": 0, "complete": 1, "priority": 2, "tag": 3, "untag": 4}


def rank_priority(rank: int, n: int, floor: float) -> float:
    """1.0 for rank 1, ``floor`` for rank ``n``, evenly spaced between."""
    if n <= 1:
        return 1.0
    return round(1.0 - (rank - 1) * (1.0 - floor) / (n - 1), 6)


def plan(
    selected: Sequence[dict],
    rest: Sequence[dict],
    parked: Sequence[dict],
    final_stages: Iterable[str],
    round_: int,
    actions: Sequence[str] = ("priority",),
    priority_floor: float = 0.6,
    rest_priority: float | None = None,
    tag: str | None = None,
) -> list[dict]:
    """The records for one round. Items are dicts with ``data_hash``, ``title``, ``stage`` (and ``rank``
    for the selected, 1 = label first); ``final_stages`` are the workflow's final stage titles."""
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise ValueError(f"unknown action '{unknown[0]}' (known: {', '.join(ACTIONS)})")
    if not 0.0 <= priority_floor <= 1.0 or (rest_priority is not None and not 0.0 <= rest_priority <= 1.0):
        raise ValueError("priorities must lie in [0, 1]")
    final = set(final_stages)
    parked_hashes = {p["data_hash"] for p in parked}
    records: dict[tuple[str, str], dict] = {}

    def add(item: dict, action: str, value: object = None) -> None:
        records[(item["data_hash"], action)] = {
            "data_hash": item["data_hash"],
            "title": item.get("title"),
            "stage": item.get("stage"),
            "action": action,
            "value": value,
            "rank": item.get("rank"),
            "status": "planned",
            "error": None,
        }

    reopened: set[str] = set()
    if "relabel" in actions:
        for item in selected:
            add(item, "reopen")
            reopened.add(item["data_hash"])
    if "park" in actions:
        for item in selected:
            if item["data_hash"] in parked_hashes:
                add(item, "reopen")
                add(item, "untag", PARKED)
                reopened.add(item["data_hash"])
        for item in rest:
            if item.get("stage") not in final:
                add(item, "complete")
                add(item, "tag", PARKED)
    if "complete" in actions:
        for item in rest:
            if item.get("stage") not in final:
                add(item, "complete")
    if "unpark" in actions:
        for item in parked:
            add(item, "reopen")
            add(item, "untag", PARKED)
    if "priority" in actions:
        # A task in the final stage has no priority; it gets one only if this plan reopens it.
        for item in selected:
            if item.get("stage") not in final or item["data_hash"] in reopened:
                add(item, "priority", rank_priority(int(item["rank"]), len(selected), priority_floor))
        completing = {h for h, a in records if a == "complete"}
        if rest_priority is not None:
            for item in rest:
                if item.get("stage") not in final and item["data_hash"] not in completing:
                    add(item, "priority", float(rest_priority))
    if "tag" in actions:
        for item in selected:
            add(item, "tag", tag or f"round_{round_:03d}")
    return sorted(records.values(), key=lambda r: (_ORDER[r["action"]], r["rank"] or 10**9, r["data_hash"]))


def counts(records: Sequence[dict]) -> dict[str, dict[str, int]]:
    """``{action: {status: count}}``."""
    out: dict[str, dict[str, int]] = {}
    for record in records:
        per = out.setdefault(record["action"], {})
        per[record["status"]] = per.get(record["status"], 0) + 1
    return out


def describe(records: Sequence[dict], show: int = 10) -> list[str]:
    """Lines for the console: counts per action, then the first ``show`` records of each action."""
    lines = []
    for action, per in counts(records).items():
        total = sum(per.values())
        status = ", ".join(f"{k} {v}" for k, v in sorted(per.items()))
        lines.append(f"{action:<9} {total:>6} ({status})")
        for record in [r for r in records if r["action"] == action][:show]:
            value = "" if record["value"] is None else f" -> {record['value']}"
            rank = "" if record["rank"] is None else f"#{record['rank']} "
            where = f"[{record['data_hash'][:8]}] in {record['stage']}"
            lines.append(f"    {rank}{record['title']} {where}{value}")
    return lines or ["nothing to do"]


def apply(records: list[dict], adapter: Any, save: Callable[[], None]) -> None:
    """Apply the platform records through ``adapter`` (see ``EncordAdapter.apply``), saving after each bundle.

    Tag records are left to the caller, which keeps them in its own store.
    """
    platform = [r for r in records if r["action"] in PLATFORM_ACTIONS]
    adapter.apply(platform, checkpoint=save)
    save()

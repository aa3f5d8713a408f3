"""The planner of a round's actions on an Encord project: pure, configured by ``act.function``.

A plan is a list of records ``{data_hash, title, stage, action, value, rank, status, error}`` where
``action`` is one of
- ``priority`` (value: the task priority, 1.0 = label first),
- ``reopen`` (back to the first annotation stage),
- ``complete`` (to the final stage),
- ``create_label_row`` (before ``complete`` of a row that has no label row yet, which the SDK requires),
- ``tag`` or ``untag`` (value: the tag; kept in the run store only).
Records are applied by :meth:`plugins.encord.platform.EncordPlatform.apply` (tags by the runner).

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

from collections.abc import Iterable, Sequence

# What the config may name as a _target_ (the rest are helpers: see runner.config).
__all__ = ["plan"]

ACTIONS = ("priority", "relabel", "complete", "park", "unpark", "tag")
PARKED = "parked"
_ORDER = {"create_label_row": 0, "reopen": 1, "complete": 2, "priority": 3, "tag": 4, "untag": 5}


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
    actions: Sequence[str],
    priority_floor: float,
    rest_priority: float | None,
    tag: str | None,
) -> list[dict]:
    """The records for one round.

    Items are dicts with ``data_hash``, ``title``, ``stage``, ``has_label_row`` (and ``rank`` for the
    selected, 1 = label first); ``final_stages`` are the workflow's final stage titles. An item that does not
    say whether it has a label row gets a ``create_label_row`` record before ``complete``; applying it changes
    nothing where the row has one.
    """
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

    def complete(item: dict) -> None:
        if not item.get("has_label_row", False):
            add(item, "create_label_row")
        add(item, "complete")

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
                complete(item)
                add(item, "tag", PARKED)
    if "complete" in actions:
        for item in rest:
            if item.get("stage") not in final:
                complete(item)
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

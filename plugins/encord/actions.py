"""The planner of a round's actions on an Encord project: pure, configured by ``act.function``.

A plan is a list of records ``{data_hash, title, stage, action, value, rank, status, error}`` (``issue`` records
also carry ``issue_tags``) where ``action`` is one of
- ``priority`` (value: the task priority, 1.0 = label first),
- ``reopen`` (back to the first annotation stage), ``reject`` (a task in review, down its reject pathway),
  ``move`` (value: the stage the task moves to), ``route`` (value: the pathway an Agent stage's task takes),
- ``complete`` (to the final stage),
- ``create_label_row`` (before ``complete`` of a row that has no label row yet, which the SDK requires),
- ``issue`` (value: the comment of a file issue on the task; ``issue_tags``: its tags),
- ``tag`` or ``untag`` (value: the tag; kept in the run store only).
Records are applied by :meth:`plugins.encord.platform.EncordPlatform.apply` (tags by the runner).

What every plan does:
- ``suspects`` (labels the round's audit found most likely wrong, ``selection.relabel_share`` of the budget) go
  back to annotation: from a final stage by ``reopen`` (or ``move`` to ``relabel_stage``), from a review stage by
  ``reject`` (or ``move``); each gets an issue saying which label looks wrong and what the model suggests, tagged
  ``issue_tag``;
- with ``agent_stage`` set, tasks waiting at that Agent stage are routed by rank: the selected ones down the
  pathway ``agent_selected``, the others down ``agent_rest``; nothing else is planned for them there.
``actions`` (any combination) add:
- ``priority``: the selected items get priorities by rank, 1.0 for the first down to ``priority_floor`` for
  the last, suspects 1.0; with ``rest_priority`` set, every other unlabelled item gets that priority (lowered).
- ``complete``: move the other unlabelled items to the final stage ("out of the way").
- ``park``: Encord Active's documented workaround for the missing task priorities: the other unlabelled
  items go to the final stage and are tagged ``parked``; selected items that were parked are reopened.
- ``unpark``: reopen every parked item that still has no label, and drop the tag.
- ``tag``: tag the selected items (``tag``, default ``round_NNN``) and the suspects (``issue_tag``) in the run
  store; with ``platform_tags`` each selected task also gets an issue tagged with that tag and the item's other
  tags in the run store (``selection.tag``), so the tags are seen on Encord (the SDK has no other per-task tag).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# What the config may name as a _target_ (the rest are helpers: see runner.config).
__all__ = ["plan"]

ACTIONS = ("priority", "complete", "park", "unpark", "tag")
PARKED = "parked"
_ORDER = {
    "create_label_row": 0, "reopen": 1, "reject": 2, "move": 3, "route": 4, "complete": 5, "priority": 6,
    "issue": 7, "tag": 8, "untag": 9,
}


def rank_priority(rank: int, n: int, floor: float) -> float:
    """1.0 for rank 1, ``floor`` for rank ``n``, evenly spaced between."""
    if n <= 1:
        return 1.0
    return round(1.0 - (rank - 1) * (1.0 - floor) / (n - 1), 6)


def suspect_comment(item: Mapping, round_: int) -> str:
    """The issue an annotator reads on a task sent back for relabelling."""
    return (
        f"Label '{item['given']}' looks wrong: a model trained without this item suggests '{item['suggested']}' "
        f"(label-issue score {float(item['score']):.2f}, round {round_}). Please check the label and correct it."
    )


def selection_comment(item: Mapping, n: int, round_: int, tag: str) -> str:
    return f"Selected for labelling in round {round_} ({tag}, rank {item['rank']} of {n})."


def check_settings(stages: Mapping[str, Mapping], actions: Sequence[str], priority_floor: float,
                   rest_priority: float | None, relabel_stage: str | None, agent_stage: str | None,
                   agent_selected: str | None, agent_rest: str | None) -> None:
    """ValueError, naming the argument, for settings that the actions or this workflow cannot take."""
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        hint = " (label suspects go back by selection.relabel_share)" if unknown[0] == "relabel" else ""
        raise ValueError(f"unknown action '{unknown[0]}' (known: {', '.join(ACTIONS)}){hint}")
    if not 0.0 <= priority_floor <= 1.0 or (rest_priority is not None and not 0.0 <= rest_priority <= 1.0):
        raise ValueError("priorities must lie in [0, 1]")
    titles = ", ".join(stages)
    if relabel_stage is not None and relabel_stage not in stages:
        raise ValueError(f"relabel_stage '{relabel_stage}' is not a stage of the workflow ({titles})")
    if agent_stage is None:
        return
    if stages.get(agent_stage, {}).get("kind") != "AGENT":
        agents = [t for t, s in stages.items() if s.get("kind") == "AGENT"]
        raise ValueError(f"agent_stage '{agent_stage}' is not an Agent stage of the workflow "
                         f"(Agent stages: {', '.join(agents) or 'none'})")
    pathways = list(stages[agent_stage].get("pathways", []))
    for key, name in (("agent_selected", agent_selected), ("agent_rest", agent_rest)):
        if name is not None and name not in pathways:
            raise ValueError(f"{key} '{name}' is not a pathway of Agent stage '{agent_stage}' "
                             f"(pathways: {', '.join(pathways) or 'none'})")


def plan(
    selected: Sequence[dict],
    rest: Sequence[dict],
    parked: Sequence[dict],
    suspects: Sequence[dict],
    stages: Mapping[str, Mapping],
    round_: int,
    actions: Sequence[str],
    priority_floor: float,
    rest_priority: float | None,
    tag: str | None,
    platform_tags: bool = True,
    issue_tag: str = "label_issue",
    relabel_stage: str | None = None,
    agent_stage: str | None = None,
    agent_selected: str | None = None,
    agent_rest: str | None = None,
) -> list[dict]:
    """The records for one round.

    Items are dicts with ``data_hash``, ``title``, ``stage``, ``has_label_row``, ``tags`` (their tags in the run
    store), and ``rank`` for the selected and the suspects, 1 = first (``given``, ``suggested`` and ``score`` for
    the suspects); ``stages`` maps each
    workflow stage title to ``{"kind": ANNOTATION | REVIEW | AGENT | DONE | ..., "pathways": [...]}``. ``rest``
    holds every unlabelled item that was not selected. An item that does not say whether it has a label row gets
    a ``create_label_row`` record before ``complete``; applying it changes nothing where the row has one.
    """
    check_settings(stages, actions, priority_floor, rest_priority, relabel_stage, agent_stage, agent_selected,
                   agent_rest)
    final = {title for title, stage in stages.items() if stage.get("kind") == "DONE"}
    parked_hashes = {p["data_hash"] for p in parked}
    selection_tag = tag or f"round_{round_:03d}"
    records: dict[tuple[str, str], dict] = {}

    def add(item: dict, action: str, value: object = None, **more: object) -> None:
        records[(item["data_hash"], action)] = {
            "data_hash": item["data_hash"],
            "title": item.get("title"),
            "stage": item.get("stage"),
            "action": action,
            "value": value,
            "rank": item.get("rank"),
            "status": "planned",
            "error": None,
            **more,
        }

    def complete(item: dict) -> None:
        if not item.get("has_label_row", False):
            add(item, "create_label_row")
        add(item, "complete")

    # Tasks at the Agent stage are the runner's to route, and only that.
    routed: set[str] = set()
    if agent_stage is not None:
        for items, pathway in ((selected, agent_selected), (rest, agent_rest)):
            for item in items:
                if item.get("stage") == agent_stage:
                    routed.add(item["data_hash"])
                    if pathway is not None:
                        add(item, "route", pathway)
    waiting_rest = [item for item in rest if item["data_hash"] not in routed]

    reopened: set[str] = set()
    for item in suspects:
        kind = stages.get(item.get("stage"), {}).get("kind")
        if relabel_stage is not None:
            add(item, "move", relabel_stage)
        elif kind == "REVIEW":
            add(item, "reject")
        else:
            add(item, "reopen")
        reopened.add(item["data_hash"])
        add(item, "issue", suspect_comment(item, round_), issue_tags=[issue_tag])
    if "park" in actions:
        for item in selected:
            if item["data_hash"] in parked_hashes:
                add(item, "reopen")
                add(item, "untag", PARKED)
                reopened.add(item["data_hash"])
        for item in waiting_rest:
            if item.get("stage") not in final:
                complete(item)
                add(item, "tag", PARKED)
    if "complete" in actions:
        for item in waiting_rest:
            if item.get("stage") not in final:
                complete(item)
    if "unpark" in actions:
        for item in parked:
            add(item, "reopen")
            add(item, "untag", PARKED)
    # A task in the final stage has no priority and takes no issue; it gets them only if this plan reopens it.
    active = [item for item in selected if item.get("stage") not in final or item["data_hash"] in reopened]
    if "priority" in actions:
        for item in active:
            add(item, "priority", rank_priority(int(item["rank"]), len(selected), priority_floor))
        for item in suspects:
            add(item, "priority", 1.0)
        completing = {h for h, a in records if a == "complete"}
        if rest_priority is not None:
            for item in waiting_rest:
                if item.get("stage") not in final and item["data_hash"] not in completing:
                    add(item, "priority", float(rest_priority))
    if "tag" in actions:
        for item in selected:
            add(item, "tag", selection_tag)
        for item in suspects:
            add(item, "tag", issue_tag)
        if platform_tags:
            for item in active:
                shown = sorted({selection_tag, *item.get("tags", [])} - {PARKED})
                add(item, "issue", selection_comment(item, len(selected), round_, selection_tag), issue_tags=shown)
    return sorted(records.values(), key=lambda r: (_ORDER[r["action"]], r["rank"] or 10**9, r["data_hash"]))

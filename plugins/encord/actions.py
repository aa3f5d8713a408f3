"""The planner of a round's actions on an Encord project: pure, built once from ``act.function``.

A plan is a list of records ``{data_hash, title, stage, action, value, rank, status, error}`` (``issue`` records
also carry ``issue_tags``) where ``action`` is one of
- ``priority`` (value: the task priority, 1.0 = label first),
- ``reopen`` (back to the first annotation stage), ``reject`` (a task in review, down its reject pathway),
  ``move`` (value: the stage the task moves to), ``route`` (value: the pathway an Agent stage's task takes),
- ``complete`` (to the final stage),
- ``create_label_row`` (before ``complete`` of a row that has no label row yet, which the SDK requires),
- ``issue`` (value: the comment of a file issue on the task; ``issue_tags``: its tags),
- ``tag`` or ``untag`` (value: the tag; kept in the run store only).
Records are applied by :meth:`plugins.encord.platform.EncordPlatform.apply` (tags by the runner). The settings
below are the keyword arguments of :class:`ActionPlanner` (the keys under ``act.function``); the runner calls
the planner once a round with the round's items.

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
from typing import Any

# What the config may name as a _target_ (the rest are helpers: see runner.targets).
__all__ = ["ActionPlanner"]

# The shapes ActionPlanner describes: one of the round's items, the workflow's stages by title, one plan record.
Item = Mapping[str, Any]
Stages = Mapping[str, Mapping[str, Any]]
Record = dict[str, Any]

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


def suspect_comment(item: Item, round_: int) -> str:
    """The issue an annotator reads on a task sent back for relabelling."""
    return (
        f"Label '{item['given']}' looks wrong: a model trained without this item suggests '{item['suggested']}' "
        f"(label-issue score {float(item['score']):.2f}, round {round_}). Please check the label and correct it."
    )


def selection_comment(item: Item, n: int, round_: int, tag: str) -> str:
    return f"Selected for labelling in round {round_} ({tag}, rank {item['rank']} of {n})."


def check_actions(actions: Sequence[str], priority_floor: float, rest_priority: float | None) -> None:
    """ValueError, naming the argument, for settings no workflow can take."""
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        hint = " (label suspects go back by selection.relabel_share)" if unknown[0] == "relabel" else ""
        raise ValueError(f"unknown action '{unknown[0]}' (known: {', '.join(ACTIONS)}){hint}")
    if not 0.0 <= priority_floor <= 1.0 or (rest_priority is not None and not 0.0 <= rest_priority <= 1.0):
        raise ValueError("priorities must lie in [0, 1]")


def check_workflow(stages: Stages, relabel_stage: str | None, agent_stage: str | None,
                   agent_selected: str | None, agent_rest: str | None) -> None:
    """ValueError, naming the argument, for stages and pathways this workflow lacks."""
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


def stage_kind(stages: Stages, title: str | None) -> str | None:
    """ANNOTATION, REVIEW, AGENT, DONE, ... of the stage titled ``title``; None for no stage or an unknown one."""
    return None if title is None else stages.get(title, {}).get("kind")


class Records:
    """A round's records by (data hash, action): a later record for the same pair replaces the earlier one."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], Record] = {}

    def add(self, item: Item, action: str, value: object = None, **more: object) -> None:
        self.by_key[(item["data_hash"], action)] = {
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

    def complete(self, item: Item) -> None:
        # The SDK completes only rows that have a label row; creating one where it exists changes nothing.
        if not item.get("has_label_row", False):
            self.add(item, "create_label_row")
        self.add(item, "complete")

    def hashes(self, action: str) -> set[str]:
        return {data_hash for data_hash, planned in self.by_key if planned == action}

    def ordered(self) -> list[Record]:
        """In the order they are applied: by action, then rank (unranked last), then data hash."""
        return sorted(self.by_key.values(), key=lambda r: (_ORDER[r["action"]], r["rank"] or 10**9, r["data_hash"]))


def send_back_suspects(records: Records, suspects: Sequence[Item], stages: Stages, round_: int,
                       relabel_stage: str | None, issue_tag: str) -> set[str]:
    """Label suspects back to annotation, each with an issue saying why; their data hashes."""
    for item in suspects:
        if relabel_stage is not None:
            records.add(item, "move", relabel_stage)
        elif stage_kind(stages, item.get("stage")) == "REVIEW":
            records.add(item, "reject")
        else:
            records.add(item, "reopen")
        records.add(item, "issue", suspect_comment(item, round_), issue_tags=[issue_tag])
    return {item["data_hash"] for item in suspects}


def park_rest(records: Records, selected: Sequence[Item], waiting_rest: Sequence[Item],
              parked: Sequence[Item], final: set[str]) -> set[str]:
    """Encord Active's workaround: the rest parked in the final stage, parked selected items reopened (their
    data hashes are returned)."""
    parked_hashes = {p["data_hash"] for p in parked}
    reopened = set()
    for item in selected:
        if item["data_hash"] in parked_hashes:
            records.add(item, "reopen")
            records.add(item, "untag", PARKED)
            reopened.add(item["data_hash"])
    for item in waiting_rest:
        if item.get("stage") not in final:
            records.complete(item)
            records.add(item, "tag", PARKED)
    return reopened


def complete_rest(records: Records, waiting_rest: Sequence[Item], final: set[str]) -> None:
    """The unselected items out of annotators' way, in the final stage."""
    for item in waiting_rest:
        if item.get("stage") not in final:
            records.complete(item)


def unpark(records: Records, parked: Sequence[Item]) -> None:
    for item in parked:
        records.add(item, "reopen")
        records.add(item, "untag", PARKED)


class ActionPlanner:
    """``act.function``: what a round's plan does, checked once; called once a round with the round's items.

    Items are dicts with ``data_hash``, ``title``, ``stage``, ``has_label_row``, ``tags`` (their tags in the run
    store), and ``rank`` for the selected and the suspects, 1 = first (``given``, ``suggested`` and ``score`` for
    the suspects); ``workflow`` maps each workflow stage title to ``{"kind": ANNOTATION | REVIEW | AGENT | DONE |
    ..., "pathways": [...]}``. ``rest`` holds every unlabelled item that was not selected. An item that does not
    say whether it has a label row gets a ``create_label_row`` record before ``complete``; applying it changes
    nothing where the row has one. The settings are described in the module notes.
    """

    def __init__(
        self,
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
    ) -> None:
        check_actions(actions, priority_floor, rest_priority)
        self.actions = tuple(actions)
        self.priority_floor = priority_floor
        self.rest_priority = rest_priority
        self.tag = tag
        self.platform_tags = platform_tags
        self.issue_tag = issue_tag
        self.relabel_stage = relabel_stage
        self.agent_stage = agent_stage
        self.agent_selected = agent_selected
        self.agent_rest = agent_rest

    def __call__(
        self,
        selected: Sequence[Item],
        rest: Sequence[Item],
        parked: Sequence[Item],
        suspects: Sequence[Item],
        workflow: Stages,
        round_: int,
    ) -> list[Record]:
        """The records for one round; ``workflow``: the project's workflow stages by title (checked here: they are
        the platform's, not the config's)."""
        check_workflow(workflow, self.relabel_stage, self.agent_stage, self.agent_selected, self.agent_rest)
        final = {title for title, stage in workflow.items() if stage.get("kind") == "DONE"}
        records = Records()
        routed = self.route_agent_tasks(records, selected, rest)
        waiting_rest = [item for item in rest if item["data_hash"] not in routed]
        reopened = send_back_suspects(records, suspects, workflow, round_, self.relabel_stage, self.issue_tag)
        if "park" in self.actions:
            reopened |= park_rest(records, selected, waiting_rest, parked, final)
        if "complete" in self.actions:
            complete_rest(records, waiting_rest, final)
        if "unpark" in self.actions:
            unpark(records, parked)
        # A task in the final stage has no priority and takes no issue; it gets them only if this plan reopens it.
        active = [item for item in selected if item.get("stage") not in final or item["data_hash"] in reopened]
        if "priority" in self.actions:
            self.prioritize(records, active, len(selected), suspects, waiting_rest, final)
        if "tag" in self.actions:
            self.tag_items(records, selected, suspects, active, round_)
        return records.ordered()

    def route_agent_tasks(self, records: Records, selected: Sequence[Item], rest: Sequence[Item]) -> set[str]:
        """The tasks waiting at the Agent stage, routed by rank; their data hashes (the runner's to route, and
        only that)."""
        routed: set[str] = set()
        if self.agent_stage is None:
            return routed
        for items, pathway in ((selected, self.agent_selected), (rest, self.agent_rest)):
            for item in items:
                if item.get("stage") == self.agent_stage:
                    routed.add(item["data_hash"])
                    if pathway is not None:
                        records.add(item, "route", pathway)
        return routed

    def prioritize(self, records: Records, active: Sequence[Item], n_selected: int, suspects: Sequence[Item],
                   waiting_rest: Sequence[Item], final: set[str]) -> None:
        """Priorities by rank for the selection, the top one for suspects, ``rest_priority`` for the rest."""
        for item in active:
            records.add(item, "priority", rank_priority(int(item["rank"]), n_selected, self.priority_floor))
        for item in suspects:
            records.add(item, "priority", 1.0)
        if self.rest_priority is None:
            return
        completing = records.hashes("complete")
        for item in waiting_rest:
            if item.get("stage") not in final and item["data_hash"] not in completing:
                records.add(item, "priority", float(self.rest_priority))

    def tag_items(self, records: Records, selected: Sequence[Item], suspects: Sequence[Item],
                  active: Sequence[Item], round_: int) -> None:
        """Run-store tags for the selection and the suspects; with ``platform_tags``, an issue carrying them."""
        selection_tag = self.tag or f"round_{round_:03d}"
        for item in selected:
            records.add(item, "tag", selection_tag)
        for item in suspects:
            records.add(item, "tag", self.issue_tag)
        if not self.platform_tags:
            return
        for item in active:
            shown = sorted({selection_tag, *item.get("tags", [])} - {PARKED})
            records.add(item, "issue", selection_comment(item, len(selected), round_, selection_tag), issue_tags=shown)

"""Applying the platform records of an action plan: the only place that changes a project.

A record is ``{data_hash, stage, action, value, status, error, ...}`` (see :mod:`plugins.encord.actions`). The
kinds, applied in this order, one bundle per chunk of ``bundle_size`` records:
- ``create_label_row``: give a row its label row (``initialise_labels`` on a row without one), which
  ``workflow_complete`` needs; the task moves to LABEL_IN_PROGRESS as it does in the editor;
- ``reopen``: back to the first annotation stage (``workflow_reopen``);
- ``reject``: a task in a review stage is rejected (``ReviewTask.reject``) and follows the reject pathway;
- ``move``: the task moves to the stage titled ``value`` (``task.move``);
- ``route``: a task waiting at an Agent stage goes down the pathway named ``value`` (``AgentTask.proceed``);
- ``complete``: to the final stage (``workflow_complete``);
- ``priority``: the task priority (``set_priority``), 1.0 = label first;
- ``issue``: a file issue on the task, comment ``value`` and tags ``issue_tags`` (``task.issues.add_file_issue``;
  not bundled by the SDK, so one request each).
Before each chunk the rows are listed again and records whose effect the platform already shows are marked
applied without a call (an issue counts as shown when the task already has one with the same comment), so applying
twice changes nothing and a re-run after a crash or a partial failure finishes only what is missing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from plugins.encord.actions import Record
from plugins.encord.reading import Reader, RowInfo, chunks

# Nothing here is a config _target_: these are the package's helpers (see runner.targets).
__all__ = []

KINDS = ("create_label_row", "reopen", "reject", "move", "route", "complete", "priority", "issue")
# Kinds acted on through the workflow's task objects rather than the label row.
TASK_KINDS = ("reject", "move", "route", "issue")


def shows(record: Record, state: RowInfo, first_stage: str | None, final_stages: set[str]) -> bool:
    """Whether the platform already shows what ``record`` would do (so applying it changes nothing)."""
    action = record["action"]
    if action == "priority":
        return state.priority is not None and abs(state.priority - float(record["value"])) < 1e-6
    if action == "reopen":
        # The SDK leaves rows without a label row where they are: nothing to reopen.
        return state.label_hash is None or (first_stage is not None and state.stage == first_stage)
    if action == "complete":
        return state.stage in final_stages
    if action == "create_label_row":
        return state.label_hash is not None
    if action in ("reject", "route"):
        return bool(state.stage != record["stage"])  # the task has left the stage it was planned at
    if action == "move":
        return bool(state.stage == record["value"])
    if action == "issue":
        return False  # only the task's issues can tell (see Writer._issues)
    raise ValueError(f"not a platform action: {action}")


def error_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


class Writer:
    """Applies records to the project behind ``reader`` (which lists rows and knows the workflow)."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def apply(self, records: list[Record], checkpoint: Callable[[], None] = lambda: None) -> None:
        """Apply the not-yet-applied records in place (``status`` and ``error``), kind by kind.

        A chunk that still fails after the retries is marked failed (with the error) and the rest goes on.
        ``checkpoint`` runs after every chunk, so a record kept on disk lags at most one bundle.
        """
        for record in records:
            if record["action"] not in KINDS:
                record.update(status="failed", error=f"not a platform action (known: {', '.join(KINDS)})")
        for kind in KINDS:
            todo = [r for r in records if r["action"] == kind and r.get("status") != "applied"]
            for chunk in chunks(todo, self.reader.bundle_size):
                try:
                    self.reader.retry.call(f"{kind} ({len(chunk)} tasks)", functools.partial(self._apply, chunk))
                except Exception as exc:
                    for record in chunk:
                        if record.get("status") != "applied":
                            record.update(status="failed", error=error_line(exc))
                checkpoint()

    def _apply(self, chunk: Sequence[Record]) -> None:
        todo, states = self._unapplied(chunk)
        if not todo:
            return
        if todo[0][0]["action"] in TASK_KINDS:
            self._apply_to_tasks([record for record, _ in todo], states)
            return
        with self.reader.project.create_bundle(bundle_size=self.reader.bundle_size) as bundle:
            for record, row in todo:
                self._act_on_row(record, row, bundle)
        for record, _ in todo:
            record.update(status="applied", error=None)

    def _unapplied(self, chunk: Sequence[Record]) -> tuple[list[tuple[Record, Any]], dict[str, RowInfo]]:
        """The chunk's records that still need a call, with their rows, and the state of every row found; the
        others are marked applied (the platform shows them already) or failed (they cannot apply)."""
        first, final = self.reader.stage_titles()
        rows = {str(row.data_hash): row for row in self.reader.list_rows([r["data_hash"] for r in chunk])}
        todo: list[tuple[Record, Any]] = []
        states: dict[str, RowInfo] = {}
        for record in chunk:
            row = rows.get(record["data_hash"])
            if row is None:
                record.update(status="failed", error="not in the project any more")
                continue
            states[record["data_hash"]] = state = self.reader.state(row)
            if shows(record, state, first, final):
                record.update(status="applied", error=None)
            elif record["action"] == "complete" and row.label_hash is None:
                record.update(
                    status="failed",
                    error="has no label row; plan the round again so that a create_label_row record comes first",
                )
            else:
                todo.append((record, row))
        return todo, states

    @staticmethod
    def _act_on_row(record: Record, row: Any, bundle: Any) -> None:
        action = record["action"]
        if action == "priority":
            row.set_priority(priority=float(record["value"]), bundle=bundle)
        elif action == "reopen":
            row.workflow_reopen(bundle=bundle)
        elif action == "complete":
            row.workflow_complete(bundle=bundle)
        else:
            row.initialise_labels(overwrite=True, bundle=bundle, include_signed_url=False)

    def _apply_to_tasks(self, todo: list[Record], states: dict[str, RowInfo]) -> None:
        """Records of one task kind: the tasks are found at the stage each row is at now. The SDK bundles the
        actions of one stage (and the moves of one origin to one destination) together, so each such group gets
        its own bundle."""
        groups: dict[tuple[str, str], list[Record]] = {}
        for record in todo:
            stage = states[record["data_hash"]].stage
            if stage is None:
                record.update(status="failed", error="has no workflow task")
            else:
                key = (stage, str(record["value"]) if record["action"] == "move" else "")
                groups.setdefault(key, []).append(record)
        for (stage, _), records in groups.items():
            tasks = self.reader.tasks(stage, [r["data_hash"] for r in records])
            acted: list[Record] = []
            with self.reader.project.create_bundle(bundle_size=self.reader.bundle_size) as bundle:
                for record in records:
                    task = tasks.get(record["data_hash"])
                    if task is None:
                        record.update(status="failed", error=f"no task waiting at stage '{stage}'")
                    elif record["action"] == "issue":
                        self._issue(record, task, stage)
                    else:
                        self._act(record, task, bundle)
                        acted.append(record)
            for record in acted:
                record.update(status="applied", error=None)

    def _act(self, record: Record, task: Any, bundle: Any) -> None:
        action = record["action"]
        if action == "reject":
            task.reject(bundle=bundle)
        elif action == "route":
            task.proceed(pathway_name=str(record["value"]), bundle=bundle)
        else:
            destination = self.reader.stage(str(record["value"])).uuid
            task.move(destination_stage_uuid=destination, bundle=bundle)

    def _issue(self, record: Record, task: Any, stage: str) -> None:
        if not hasattr(task, "issues"):
            record.update(status="failed", error=f"the task is in the final stage '{stage}', which takes no issues")
            return
        issues = task.issues
        comment = str(record["value"])
        if not any(issue.comments and issue.comments[0].content == comment for issue in issues.list()):
            issues.add_file_issue(comment=comment, issue_tags=list(record.get("issue_tags") or []))
        record.update(status="applied", error=None)

"""The workflow of the offline stand-in: stages, the tasks waiting there, Agent pathways and task issues.

Mirrors the SDK classes this package reaches through ``project.workflow`` (0.1.21x), method by method
(:mod:`plugins.encord.contract` lists them; the tests compare the signatures with the installed SDK).
Behaviour copied from the SDK because the package depends on it:
- ``project.workflow.stages`` are stage objects of their kind (annotation, review, final, Agent with its
  ``pathways``); ``get_tasks(data_hash=...)`` lists the tasks waiting there;
- ``ReviewTask.reject`` follows the stage's ``reject_destination`` (the first annotation stage by default),
  ``AgentTask.proceed`` a pathway, ``task.move`` goes to a stage; a task that is no longer at its stage refuses
  (OperationNotAllowed), as the server does;
- ``task.issues`` (not on final-stage tasks) lists and adds file issues, unbundled.
Every call goes through the project (:class:`StandInServer`: ``plugins.encord.standin_project.OfflineProject``),
which logs it and plays the server.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from uuid import UUID

from plugins.encord.label_dicts import stable_uuid


class StandInServer(Protocol):
    """What the workflow objects ask of the stand-in project that holds them."""

    records: dict[str, dict[str, Any]]
    stages: list[dict[str, Any]]

    def _log(self, cls: str, name: str, **kwargs: Any) -> None: ...

    def _run(self, kind: str, data_hash: str, apply: Callable[[], None], bundle: Any) -> None: ...

    def _server(self, kind: str, items: Sequence[tuple[str, Callable[[], None]]]) -> None: ...

    def place(self, data_hash: str, stage: dict[str, Any]) -> None: ...

    def first_stage(self, stage_type: str) -> dict[str, Any]: ...

    def stage_by_uuid(self, stage_uuid: Any) -> dict[str, Any] | None: ...


# Nothing here is a config _target_: these are the package's helpers (see runner.targets).
__all__: list[str] = []


class OfflineIssueComment:
    def __init__(self, content: str) -> None:
        self.content = content


class OfflineIssueTag:
    def __init__(self, name: str) -> None:
        self.name = name


class OfflineIssue:
    """A file issue as ``TaskIssues.list`` gives it: comments and tags."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.uuid = UUID(record["uuid"])
        self.comments = [OfflineIssueComment(c) for c in record["comments"]]
        self.tags = [OfflineIssueTag(t) for t in record["tags"]]


class OfflineTaskIssues:
    """``encord.issues.issue_client.TaskIssues`` of one data unit."""

    def __init__(self, project: StandInServer, data_hash: str) -> None:
        self._project = project
        self._data_hash = data_hash

    # Named as in the SDK; inside this class "list" is this method, so annotations spell builtins.list.
    def list(self) -> builtins.list[OfflineIssue]:
        self._project._log("TaskIssues", "list")
        self._project._server("list_issues", [(self._data_hash, lambda: None)])
        return [OfflineIssue(i) for i in self._project.records[self._data_hash].get("issues", [])]

    def add_file_issue(self, comment: str, issue_tags: builtins.list[str], space_id: str | None = None) -> None:
        self._project._log("TaskIssues", "add_file_issue", comment=comment, issue_tags=issue_tags)
        data_hash = self._data_hash

        def apply() -> None:
            issues = self._project.records[data_hash].setdefault("issues", [])
            issues.append({
                "uuid": stable_uuid("issue", data_hash, len(issues)),
                "type": "DATA_UNIT",
                "comments": [str(comment)],
                "tags": [str(t) for t in issue_tags],
            })

        self._project._server("add_issue", [(data_hash, apply)])


class OfflineTask:
    """A task waiting at one stage (the SDK's task classes share these fields)."""

    kind = "Task"

    def __init__(self, project: StandInServer, stage: dict[str, Any], data_hash: str) -> None:
        self._project = project
        self._stage = stage
        meta = project.records[data_hash]["metadata"]
        self.uuid = UUID(meta["task_uuid"]) if meta.get("task_uuid") else UUID(stable_uuid("task", data_hash))
        self.data_hash = UUID(data_hash)
        self.data_title = meta["data_title"]

    def _go(self, kind: str, destination: dict[str, Any] | None, bundle: Any) -> None:
        data_hash = str(self.data_hash)
        origin = self._stage["title"]

        def apply() -> None:
            from encord.exceptions import OperationNotAllowed

            if destination is None:
                raise OperationNotAllowed(f"task of {data_hash}: no such destination from stage '{origin}'")
            meta = self._project.records[data_hash]["metadata"]
            if (meta["workflow_graph_node"] or {}).get("title") != origin:
                raise OperationNotAllowed(f"task of {data_hash} is not at stage '{origin}' any more")
            self._project.place(data_hash, destination)

        self._project._run(kind, data_hash, apply, bundle)

    def _issues(self) -> OfflineTaskIssues:
        self._project._log(self.kind, "issues")
        return OfflineTaskIssues(self._project, str(self.data_hash))


class OfflineAnnotationTask(OfflineTask):
    kind = "AnnotationTask"

    def move(self, *, destination_stage_uuid: UUID, bundle: Any = None) -> None:
        self._project._log(self.kind, "move", destination_stage_uuid=destination_stage_uuid, bundle=bundle)
        self._go("move_tasks", self._project.stage_by_uuid(destination_stage_uuid), bundle)

    @property
    def issues(self) -> OfflineTaskIssues:
        return self._issues()


class OfflineReviewTask(OfflineTask):
    kind = "ReviewTask"

    def reject(self, *, assignee: str | None = None, retain_assignee: bool = False, bundle: Any = None) -> None:
        self._project._log(self.kind, "reject", bundle=bundle)
        target = self._stage.get("reject_destination")
        destination = self._project.stage_by_uuid(target) if target else self._project.first_stage("ANNOTATION")
        self._go("workflow_actions", destination, bundle)

    def move(self, *, destination_stage_uuid: UUID, bundle: Any = None) -> None:
        self._project._log(self.kind, "move", destination_stage_uuid=destination_stage_uuid, bundle=bundle)
        self._go("move_tasks", self._project.stage_by_uuid(destination_stage_uuid), bundle)

    @property
    def issues(self) -> OfflineTaskIssues:
        return self._issues()


class OfflineFinalStageTask(OfflineTask):
    """Tasks in a final stage take no actions and no issues; they can only be moved."""

    kind = "FinalStageTask"

    def move(self, *, destination_stage_uuid: UUID, bundle: Any = None) -> None:
        self._project._log(self.kind, "move", destination_stage_uuid=destination_stage_uuid, bundle=bundle)
        self._go("move_tasks", self._project.stage_by_uuid(destination_stage_uuid), bundle)


class OfflineAgentTask(OfflineTask):
    kind = "AgentTask"

    def proceed(
        self, pathway_name: str | None = None, pathway_uuid: UUID | str | None = None, *, bundle: Any = None
    ) -> None:
        self._project._log(self.kind, "proceed", pathway_name=pathway_name, bundle=bundle)
        if not pathway_name and not pathway_uuid:
            raise ValueError("Either `pathway_name` or `pathway_uuid` parameter must be provided.")
        pathway = next(
            (p for p in self._stage.get("pathways", [])
             if p["name"] == pathway_name or (pathway_uuid is not None and p["uuid"] == str(pathway_uuid))),
            None,
        )
        destination = None if pathway is None else self._project.stage_by_uuid(pathway["destination_uuid"])
        self._go("workflow_actions", destination, bundle)

    def move(self, *, destination_stage_uuid: UUID, bundle: Any = None) -> None:
        self._project._log(self.kind, "move", destination_stage_uuid=destination_stage_uuid, bundle=bundle)
        self._go("move_tasks", self._project.stage_by_uuid(destination_stage_uuid), bundle)

    @property
    def issues(self) -> OfflineTaskIssues:
        return self._issues()


class OfflinePathway:
    """``encord.workflow.stages.agent.AgentPathway``."""

    def __init__(self, project: StandInServer, record: dict[str, Any]) -> None:
        self._project = project
        self._record = record

    @property
    def name(self) -> str:
        self._project._log("AgentPathway", "name")
        name: str = self._record["name"]
        return name

    @property
    def uuid(self) -> UUID:
        self._project._log("AgentPathway", "uuid")
        return UUID(self._record["uuid"])

    @property
    def destination_uuid(self) -> UUID:
        self._project._log("AgentPathway", "destination_uuid")
        return UUID(self._record["destination_uuid"])


class OfflineStage:
    """A workflow stage; ``get_tasks`` lists the tasks waiting there (the SDK's per-kind signatures are
    mirrored by the subclasses)."""

    task_class: type[OfflineTask] = OfflineTask
    kind = "WorkflowStageBase"

    def __init__(self, project: StandInServer, record: dict[str, Any]) -> None:
        from encord.orm.workflow import WorkflowStageType

        self._project = project
        self._record = record
        self._uuid = UUID(record["uuid"])
        self._title: str = record["title"]
        self._type = WorkflowStageType(record["stage_type"])

    @property
    def uuid(self) -> UUID:
        self._project._log("WorkflowStageBase", "uuid")
        return self._uuid

    @property
    def title(self) -> str:
        self._project._log("WorkflowStageBase", "title")
        return self._title

    @property
    def stage_type(self) -> Any:
        self._project._log("AnnotationStage", "stage_type")
        return self._type

    def _tasks(self, data_hash: Any) -> list[OfflineTask]:
        self._project._log(self.kind, "get_tasks", data_hash=data_hash)
        wanted = None if data_hash is None else {str(h) for h in (data_hash if isinstance(data_hash, list)
                                                                 else [data_hash])}
        self._project._server("get_tasks", [(h, lambda: None) for h in sorted(wanted or [])])
        return [
            self.task_class(self._project, self._record, h)
            for h, r in self._project.records.items()
            if (r["metadata"]["workflow_graph_node"] or {}).get("title") == self._title
            and (wanted is None or h in wanted)
        ]


class OfflineAnnotationStage(OfflineStage):
    task_class = OfflineAnnotationTask
    kind = "AnnotationStage"

    def get_tasks(self, *, assignee: Any = None, data_hash: Any = None, dataset_hash: Any = None,
                  data_title: str | None = None, status: Any = None) -> list[OfflineTask]:
        return self._tasks(data_hash)


class OfflineReviewStage(OfflineStage):
    task_class = OfflineReviewTask
    kind = "ReviewStage"

    def get_tasks(self, *, assignee: Any = None, data_hash: Any = None, dataset_hash: Any = None,
                  data_title: str | None = None, status: Any = None) -> list[OfflineTask]:
        return self._tasks(data_hash)


class OfflineFinalStage(OfflineStage):
    task_class = OfflineFinalStageTask
    kind = "FinalStage"

    def get_tasks(self, data_hash: Any = None, dataset_hash: Any = None,
                  data_title: str | None = None) -> list[OfflineTask]:
        return self._tasks(data_hash)


class OfflineAgentStage(OfflineStage):
    task_class = OfflineAgentTask
    kind = "AgentStage"

    @property
    def pathways(self) -> list[OfflinePathway]:
        self._project._log("AgentStage", "pathways")
        return [OfflinePathway(self._project, p) for p in self._record.get("pathways", [])]

    def get_tasks(self, *, assignee: Any = None, data_hash: Any = None, dataset_hash: Any = None,
                  data_title: str | None = None, status: Any = None) -> list[OfflineTask]:
        return self._tasks(data_hash)


STAGE_CLASSES: dict[str, type[OfflineStage]] = {
    "ANNOTATION": OfflineAnnotationStage,
    "REVIEW": OfflineReviewStage,
    "DONE": OfflineFinalStage,
    "AGENT": OfflineAgentStage,
}


class OfflineWorkflow:
    def __init__(self, project: StandInServer) -> None:
        self._project = project

    @property
    def stages(self) -> list[OfflineStage]:
        self._project._log("Workflow", "stages")
        return [STAGE_CLASSES.get(s["stage_type"], OfflineStage)(self._project, s) for s in self._project.stages]


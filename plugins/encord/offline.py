"""An in-process stand-in for an Encord workflow project: ``Project``, ``LabelRowV2``, bundles, workflow.

It backs two things: project exports on disk (``project=encord_export``, so the whole workflow runs
without credentials) and the tests (in memory, with injected failures). It mirrors the signatures of the
real SDK methods this package uses (:mod:`plugins.encord.contract`), and it leaves everything about labels
to the real SDK: label-row dicts are built and parsed by ``encord`` itself (detached ``LabelRowV2``), so a
classification read here is read exactly as from a live project.

Behaviour copied from the SDK (0.1.21x) because the package depends on it:
- ``list_label_rows_v2`` returns snapshots; acting on a row changes the platform, not the snapshot.
- ``initialise_labels`` reads the labels of a row that has a label row (``get_label_rows``), and creates
  the label row of a row that has none (``create_label_rows``: it gets a label hash; a write).
- ``initialise_storage_item(get_signed_url=True)`` then ``get_storage_item().get_signed_url()`` gives a
  fetchable image URL (here a ``file://`` URL) for any row, label row or not (a read).
- ``workflow_reopen`` does nothing for a row without a label row; ``workflow_complete`` refuses one.
- Bundled operations run when the ``with`` block ends, grouped by kind, ``bundle_size`` at a time; an
  exception inside the block cancels them; a failing batch leaves the batches before it applied.
- ``project.workflow.stages`` are stage objects of their kind (annotation, review, final, Agent with its
  ``pathways``); ``get_tasks(data_hash=...)`` lists the tasks waiting there; ``ReviewTask.reject`` follows the
  stage's ``reject_destination`` (the first annotation stage by default), ``AgentTask.proceed`` a pathway,
  ``task.move`` goes to a stage; a task that is no longer at its stage refuses (OperationNotAllowed), as the
  server does. ``task.issues`` (not on final-stage tasks) lists and adds file issues, unbundled.
Not in the SDK: :meth:`OfflineProject.simulate_annotation` (an annotator labelling a task), ``faults``
(a hook called before every server operation, which tests use to raise errors) and the write log: every
server operation that changes the project (``WRITE_KINDS``) is appended to ``writes`` and, for a project
on disk, to ``write_log.jsonl`` (``{"kind": ..., "data_hashes": [...]}`` per line).
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from plugins.errors import InputError
from plugins.files import atomic_write_text

# What the config may name as a _target_ (the rest are helpers: see runner.config).
__all__ = ["connect"]

DEFAULT_WORKFLOW = (("Annotate 1", "ANNOTATION"), ("Review 1", "REVIEW"), ("Complete", "DONE"))
FIXED_TIME = datetime(2024, 1, 1, 12, 0, 0)
Faults = Callable[[str, list[str]], None]
WRITE_KINDS = (
    "create_label_rows", "set_priority", "workflow_reopen", "workflow_complete", "workflow_actions", "move_tasks",
    "add_issue",
)
WRITE_LOG = "write_log.jsonl"


def stable_uuid(*parts: object) -> str:
    """Deterministic ids, so an export generated twice is the same export."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "al-runner/" + "/".join(map(str, parts))))


# --- label-row dicts, made and read by the SDK --------------------------------------------------------------
def make_labels(
    structure: Any,
    metadata: dict,
    classification: str | None = None,
    answer: str | None = None,
) -> dict:
    """The SDK's label-row dict of an image row, empty or with one radio answer."""
    from encord.objects import LabelRowV2
    from encord.objects.attributes import RadioAttribute
    from encord.orm.storage import CustomerProvidedImageMetadata

    media = CustomerProvidedImageMetadata(
        mimeType="image/png",
        fileSize=int(metadata.get("file_size", 0) or 0),
        height=int(metadata["height"]),
        width=int(metadata["width"]),
    )
    row = LabelRowV2.from_media_metadata(SimpleNamespace(structure=structure), media)
    if answer is not None:
        attribute = structure.get_child_by_title(title=classification, type_=RadioAttribute)
        option = next(o for o in attribute.options if o.title == answer)
        owner = next(c for c in structure.classifications if attribute in c.attributes)
        instance = owner.create_instance()
        instance.set_answer(option, attribute=attribute)
        instance.set_for_frames(0, created_at=FIXED_TIME, last_edited_at=FIXED_TIME)
        row.add_classification_instance(instance)
    labels = row.to_encord_dict()
    # The SDK draws classification hashes at random; derive them from the row so exports are reproducible.
    renamed = {}
    for number, answer_ in enumerate(labels["classification_answers"].values()):
        answer_["classificationHash"] = stable_uuid("classification", metadata["data_hash"], number)[:8]
        renamed[answer_["classificationHash"]] = answer_
    labels["classification_answers"] = renamed
    # The detached row carries placeholder identities; give it the row's own.
    unit = next(iter(labels["data_units"].values()))
    unit.update(
        data_hash=metadata["data_hash"], data_title=metadata["data_title"], data_link=metadata["data_link"]
    )
    labels.update(
        label_hash=metadata["label_hash"],
        data_hash=metadata["data_hash"],
        data_title=metadata["data_title"],
        dataset_hash=metadata["dataset_hash"],
        dataset_title=metadata["dataset_title"],
        created_at="Mon, 01 Jan 2024 12:00:00 UTC",
        last_edited_at="Mon, 01 Jan 2024 12:00:00 UTC",
        data_units={metadata["data_hash"]: unit},
        label_status="LABELLED" if answer is not None else "LABEL_IN_PROGRESS",
    )
    return labels


def read_labels(structure: Any, metadata: dict, labels: dict) -> Any:
    """A detached SDK ``LabelRowV2`` holding ``labels``."""
    from encord.objects import LabelRowV2
    from encord.orm.label_row import LabelRowMetadata

    row = LabelRowV2(LabelRowMetadata.from_dict(metadata), None, SimpleNamespace(structure=structure))
    row.from_labels_dict(copy.deepcopy(labels))
    return row


def new_metadata(
    data_hash: str,
    title: str,
    stage: dict | None,
    priority: float | None,
    width: int,
    height: int,
    dataset_hash: str = "",
    dataset_title: str = "",
) -> dict:
    """Row metadata in the shape ``LabelRowMetadata.from_dict`` reads (what ``list_label_rows_v2``
    returns)."""
    return {
        "label_hash": None,
        "created_at": None,
        "last_edited_at": None,
        "branch_name": "main",
        "data_hash": data_hash,
        "dataset_hash": dataset_hash,
        "dataset_title": dataset_title,
        "data_title": title,
        "data_type": "IMAGE",
        "data_link": f"images/{data_hash}.png",
        "spaces": {},
        "label_status": "NOT_LABELLED",
        "annotation_task_status": "QUEUED",
        "workflow_graph_node": stage,
        "is_shadow_data": False,
        "number_of_frames": 1,
        "height": height,
        "width": width,
        "task_uuid": stable_uuid("task", data_hash),
        "priority": priority,
    }


# --- workflow -----------------------------------------------------------------------------------------------
class OfflineIssueComment:
    def __init__(self, content: str) -> None:
        self.content = content


class OfflineIssueTag:
    def __init__(self, name: str) -> None:
        self.name = name


class OfflineIssue:
    """A file issue as ``TaskIssues.list`` gives it: comments and tags."""

    def __init__(self, record: dict) -> None:
        self.uuid = uuid.UUID(record["uuid"])
        self.comments = [OfflineIssueComment(c) for c in record["comments"]]
        self.tags = [OfflineIssueTag(t) for t in record["tags"]]


class OfflineTaskIssues:
    """``encord.issues.issue_client.TaskIssues`` of one data unit."""

    def __init__(self, project: OfflineProject, data_hash: str) -> None:
        self._project = project
        self._data_hash = data_hash

    def list(self) -> list[OfflineIssue]:
        self._project._log("TaskIssues", "list")
        self._project._server("list_issues", [(self._data_hash, lambda: None)])
        return [OfflineIssue(i) for i in self._project.records[self._data_hash].get("issues", [])]

    def add_file_issue(self, comment: str, issue_tags: list[str], space_id: str | None = None) -> None:
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

    def __init__(self, project: OfflineProject, stage: dict, data_hash: str) -> None:
        self._project = project
        self._stage = stage
        meta = project.records[data_hash]["metadata"]
        self.uuid = uuid.UUID(meta["task_uuid"]) if meta.get("task_uuid") else uuid.UUID(stable_uuid("task", data_hash))
        self.data_hash = uuid.UUID(data_hash)
        self.data_title = meta["data_title"]

    def _go(self, kind: str, destination: dict | None, bundle: Any) -> None:
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

    def move(self, *, destination_stage_uuid: uuid.UUID, bundle: Any = None) -> None:
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

    def move(self, *, destination_stage_uuid: uuid.UUID, bundle: Any = None) -> None:
        self._project._log(self.kind, "move", destination_stage_uuid=destination_stage_uuid, bundle=bundle)
        self._go("move_tasks", self._project.stage_by_uuid(destination_stage_uuid), bundle)

    @property
    def issues(self) -> OfflineTaskIssues:
        return self._issues()


class OfflineFinalStageTask(OfflineTask):
    """Tasks in a final stage take no actions and no issues; they can only be moved."""

    kind = "FinalStageTask"

    def move(self, *, destination_stage_uuid: uuid.UUID, bundle: Any = None) -> None:
        self._project._log(self.kind, "move", destination_stage_uuid=destination_stage_uuid, bundle=bundle)
        self._go("move_tasks", self._project.stage_by_uuid(destination_stage_uuid), bundle)


class OfflineAgentTask(OfflineTask):
    kind = "AgentTask"

    def proceed(
        self, pathway_name: str | None = None, pathway_uuid: uuid.UUID | str | None = None, *, bundle: Any = None
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

    def move(self, *, destination_stage_uuid: uuid.UUID, bundle: Any = None) -> None:
        self._project._log(self.kind, "move", destination_stage_uuid=destination_stage_uuid, bundle=bundle)
        self._go("move_tasks", self._project.stage_by_uuid(destination_stage_uuid), bundle)

    @property
    def issues(self) -> OfflineTaskIssues:
        return self._issues()


class OfflinePathway:
    """``encord.workflow.stages.agent.AgentPathway``."""

    def __init__(self, project: OfflineProject, record: dict) -> None:
        self._project = project
        self._record = record

    @property
    def name(self) -> str:
        self._project._log("AgentPathway", "name")
        return self._record["name"]

    @property
    def uuid(self) -> uuid.UUID:
        self._project._log("AgentPathway", "uuid")
        return uuid.UUID(self._record["uuid"])

    @property
    def destination_uuid(self) -> uuid.UUID:
        self._project._log("AgentPathway", "destination_uuid")
        return uuid.UUID(self._record["destination_uuid"])


class OfflineStage:
    """A workflow stage; ``get_tasks`` lists the tasks waiting there (the SDK's per-kind signatures are
    mirrored by the subclasses)."""

    task_class: type[OfflineTask] = OfflineTask
    kind = "WorkflowStageBase"

    def __init__(self, project: OfflineProject, record: dict) -> None:
        from encord.orm.workflow import WorkflowStageType

        self._project = project
        self._record = record
        self._uuid = uuid.UUID(record["uuid"])
        self._title = record["title"]
        self._type = WorkflowStageType(record["stage_type"])

    @property
    def uuid(self) -> uuid.UUID:
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
    def __init__(self, project: OfflineProject) -> None:
        self._project = project

    @property
    def stages(self) -> list[OfflineStage]:
        self._project._log("Workflow", "stages")
        return [STAGE_CLASSES.get(s["stage_type"], OfflineStage)(self._project, s) for s in self._project.stages]


class OfflineBundle:
    """Deferred operations, run at the end of the ``with`` block (see the module notes)."""

    def __init__(self, project: OfflineProject, bundle_size: int | None) -> None:
        self._project = project
        self._size = bundle_size or 1000
        self._ops: dict[str, list[tuple[str, Callable[[], None]]]] = {}

    def add(self, kind: str, data_hash: str, apply: Callable[[], None]) -> None:
        self._ops.setdefault(kind, []).append((data_hash, apply))

    def execute(self) -> None:
        ops, self._ops = self._ops, {}
        for kind, items in ops.items():
            for start in range(0, len(items), self._size):
                self._project._server(kind, items[start : start + self._size])

    def __enter__(self) -> OfflineBundle:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.execute()


# --- storage items ------------------------------------------------------------------------------------------
class OfflineStorageItem:
    """The storage item behind a row: here only its signed URL."""

    def __init__(self, project: OfflineProject, data_hash: str, signed_url: str | None) -> None:
        self._project = project
        self._data_hash = data_hash
        self._signed_url = signed_url

    def get_signed_url(self, refetch: bool = False) -> str | None:
        self._project._log("StorageItem", "get_signed_url")
        if refetch or self._signed_url is None:
            self._project._server("get_storage_items", [(self._data_hash, lambda: None)])
            self._signed_url = self._project.signed_url(self._data_hash)
        return self._signed_url


# --- label rows ---------------------------------------------------------------------------------------------
class OfflineLabelRow:
    """A snapshot of one row, with the ``LabelRowV2`` methods this package uses."""

    def __init__(self, project: OfflineProject, metadata: dict) -> None:
        self._project = project
        self._meta = copy.deepcopy(metadata)
        self._labels: Any = None
        self._storage_item: OfflineStorageItem | None = None

    def _get(self, name: str) -> Any:
        self._project._log("LabelRowV2", name)
        return self._meta[name]

    @property
    def data_hash(self) -> str:
        return self._get("data_hash")

    @property
    def data_title(self) -> str:
        return self._get("data_title")

    @property
    def label_hash(self) -> str | None:
        return self._get("label_hash")

    @property
    def backing_item_uuid(self) -> uuid.UUID | None:
        # Exports name no storage items; a row's item is found by its data hash (as in current projects).
        self._project._log("LabelRowV2", "backing_item_uuid")
        return uuid.UUID(self._meta["data_hash"])

    @property
    def workflow_graph_node(self) -> Any:
        from encord.orm.label_row import WorkflowGraphNode

        return WorkflowGraphNode.from_optional_dict(self._get("workflow_graph_node"))

    @property
    def priority(self) -> float | None:
        return self._get("priority")

    @property
    def task_uuid(self) -> uuid.UUID | None:
        value = self._get("task_uuid")
        return None if value is None else uuid.UUID(value)

    def initialise_labels(
        self,
        include_object_feature_hashes: set[str] | None = None,
        include_classification_feature_hashes: set[str] | None = None,
        include_reviews: bool = False,
        include_archived: bool = False,
        overwrite: bool = False,
        bundle: Any = None,
        *,
        include_signed_url: bool = False,
    ) -> None:
        from encord.exceptions import LabelRowError

        self._project._log(
            "LabelRowV2",
            "initialise_labels",
            overwrite=overwrite,
            bundle=bundle,
            include_signed_url=include_signed_url,
        )
        if self._labels is not None and not overwrite:
            raise LabelRowError("label row already initialised; pass overwrite=True")
        data_hash = self._meta["data_hash"]
        creates = self._meta["label_hash"] is None

        def apply() -> None:
            record = self._project._create_label_row(data_hash) if creates else self._project.records[data_hash]
            self._meta = copy.deepcopy(record["metadata"])
            if include_signed_url:
                self._meta["data_link"] = self._project.signed_url(data_hash)
            self._labels = self._project.labels_of(data_hash)

        self._project._run("create_label_rows" if creates else "get_label_rows", data_hash, apply, bundle)

    def initialise_storage_item(self, get_signed_url: bool = False, bundle: Any = None) -> None:
        self._project._log("LabelRowV2", "initialise_storage_item", get_signed_url=get_signed_url, bundle=bundle)
        data_hash = self._meta["data_hash"]

        def apply() -> None:
            url = self._project.signed_url(data_hash) if get_signed_url else None
            self._storage_item = OfflineStorageItem(self._project, data_hash, url)

        self._project._run("get_storage_items", data_hash, apply, bundle)

    def get_storage_item(self, get_signed_urls: bool = False) -> OfflineStorageItem:
        self._project._log("LabelRowV2", "get_storage_item")
        if self._storage_item is None:
            self.initialise_storage_item(get_signed_url=get_signed_urls)
        assert self._storage_item is not None
        return self._storage_item

    def get_classification_instances(
        self, filter_ontology_classification: Any = None, filter_frames: Any = None
    ) -> list[Any]:
        from encord.exceptions import LabelRowError

        self._project._log("LabelRowV2", "get_classification_instances")
        if self._labels is None:
            raise LabelRowError("labels are not initialised; call initialise_labels() first")
        return self._labels.get_classification_instances(filter_ontology_classification, filter_frames)

    def set_priority(self, priority: float, bundle: Any = None) -> None:
        self._project._log("LabelRowV2", "set_priority", priority=priority, bundle=bundle)
        data_hash = self._meta["data_hash"]

        def apply() -> None:
            from encord.exceptions import OperationNotAllowed

            record = self._project.records[data_hash]["metadata"]
            if self._project.is_final(record):
                raise OperationNotAllowed(f"task of {data_hash} is complete; it has no priority")
            record["priority"] = float(priority)

        self._project._run("set_priority", data_hash, apply, bundle)

    def workflow_reopen(self, bundle: Any = None) -> None:
        self._project._log("LabelRowV2", "workflow_reopen", bundle=bundle)
        if self._meta["label_hash"] is None:
            return  # as the SDK: nothing moved yet, nothing to reopen
        data_hash = self._meta["data_hash"]

        def apply() -> None:
            record = self._project.records[data_hash]["metadata"]
            record["workflow_graph_node"] = self._project.stage_node("ANNOTATION")
            record["priority"] = 0.5 if record["priority"] is None else record["priority"]

        self._project._run("workflow_reopen", data_hash, apply, bundle)

    def workflow_complete(self, bundle: Any = None) -> None:
        from encord.exceptions import LabelRowError

        self._project._log("LabelRowV2", "workflow_complete", bundle=bundle)
        if self._meta["label_hash"] is None:
            raise LabelRowError("For this operation you need to initialize labelling first.")
        data_hash = self._meta["data_hash"]

        def apply() -> None:
            record = self._project.records[data_hash]["metadata"]
            record["workflow_graph_node"] = self._project.stage_node("DONE")
            record["priority"] = None

        self._project._run("workflow_complete", data_hash, apply, bundle)


# --- the project --------------------------------------------------------------------------------------------
class OfflineProject:
    """Rows (``{"metadata": ..., "labels": ... | None}`` by data hash), ontology, workflow and images."""

    def __init__(
        self,
        records: dict[str, dict],
        ontology: dict,
        stages: Sequence[dict],
        image_dir: str | Path,
        path: str | Path | None = None,
        faults: Faults | None = None,
        title: str = "offline",
        project_hash: str = "",
    ) -> None:
        from encord.objects.ontology_structure import OntologyStructure

        self.records = records
        self.ontology = ontology
        self.structure = OntologyStructure.from_dict(copy.deepcopy(ontology))
        self.stages = list(stages)
        self.image_dir = Path(image_dir)
        self.path = None if path is None else Path(path)
        self.faults = faults
        self.title = title
        self.project_hash = project_hash
        self.calls: set[tuple[str, str, tuple[str, ...]]] = set()
        self.server_calls: list[tuple[str, list[str]]] = []
        self.writes: list[tuple[str, list[str]]] = []

    # --- SDK surface ----------------------------------------------------------------------------------------
    @property
    def ontology_structure(self) -> Any:
        self._log("Project", "ontology_structure")
        return self.structure

    @property
    def workflow(self) -> OfflineWorkflow:
        self._log("Project", "workflow")
        return OfflineWorkflow(self)

    def list_label_rows_v2(
        self,
        data_hashes: list[str] | None = None,
        label_hashes: list[str] | None = None,
        edited_before: Any = None,
        edited_after: Any = None,
        label_statuses: Any = None,
        shadow_data_state: Any = None,
        data_title_eq: str | None = None,
        data_title_like: str | None = None,
        workflow_graph_node_title_eq: str | None = None,
        workflow_graph_node_title_like: str | None = None,
        include_workflow_graph_node: bool = True,
        include_client_metadata: bool = False,
        include_images_data: bool = False,
        include_children: bool = False,
        include_all_label_branches: bool = False,
        branch_name: str | None = None,
        resolve_client_metadata_locally: bool = False,
    ) -> list[OfflineLabelRow]:
        self._log(
            "Project",
            "list_label_rows_v2",
            data_hashes=data_hashes,
            include_workflow_graph_node=include_workflow_graph_node,
        )
        wanted = None if data_hashes is None else {str(h) for h in data_hashes}
        self._server("list_label_rows_v2", [(h, lambda: None) for h in (wanted or [])])
        rows = []
        for data_hash, record in self.records.items():
            meta = record["metadata"]
            node = meta["workflow_graph_node"]
            if wanted is not None and data_hash not in wanted:
                continue
            if label_hashes is not None and meta["label_hash"] not in set(map(str, label_hashes)):
                continue
            if data_title_eq is not None and meta["data_title"] != data_title_eq:
                continue
            if (
                workflow_graph_node_title_eq is not None
                and (node or {}).get("title") != workflow_graph_node_title_eq
            ):
                continue
            if not include_workflow_graph_node:
                meta = {**meta, "workflow_graph_node": None}
            rows.append(OfflineLabelRow(self, meta))
        return rows

    def create_bundle(self, bundle_size: int | None = None) -> OfflineBundle:
        self._log("Project", "create_bundle", bundle_size=bundle_size)
        return OfflineBundle(self, bundle_size)

    # --- the "server" ---------------------------------------------------------------------------------------
    def _log(self, cls: str, name: str, **kwargs: Any) -> None:
        self.calls.add((cls, name, tuple(sorted(kwargs))))

    def _run(
        self, kind: str, data_hash: str, apply: Callable[[], None], bundle: OfflineBundle | None
    ) -> None:
        if bundle is None:
            self._server(kind, [(data_hash, apply)])
        else:
            bundle.add(kind, data_hash, apply)

    def _server(self, kind: str, items: Sequence[tuple[str, Callable[[], None]]]) -> None:
        """One request: the fault hook may fail it before anything happens; otherwise all of it applies."""
        hashes = [h for h, _ in items]
        if self.faults is not None:
            self.faults(kind, hashes)
        for _, apply in items:
            apply()
        self.server_calls.append((kind, hashes))
        if kind in WRITE_KINDS:
            self.writes.append((kind, hashes))
            self.save()
            self._log_write(kind, hashes)

    def _create_label_row(self, data_hash: str) -> dict:
        record = self.records[data_hash]
        if record["metadata"]["label_hash"] is None:
            record["metadata"]["label_hash"] = stable_uuid("label", data_hash)
            record["metadata"]["created_at"] = FIXED_TIME.isoformat()
            record["metadata"]["label_status"] = "LABEL_IN_PROGRESS"
        if record["labels"] is None:
            record["labels"] = make_labels(self.structure, record["metadata"])
        return record

    def labels_of(self, data_hash: str) -> Any:
        """The row's labels as the SDK reads them (checked when the export was loaded)."""
        record = self.records[data_hash]
        return read_labels(self.structure, record["metadata"], record["labels"])

    def stage_node(self, stage_type: str) -> dict:
        stage = self.first_stage(stage_type)
        return {"uuid": stage["uuid"], "title": stage["title"]}

    def first_stage(self, stage_type: str) -> dict:
        return next(s for s in self.stages if s["stage_type"] == stage_type)

    def stage_by_uuid(self, stage_uuid: Any) -> dict | None:
        return next((s for s in self.stages if s["uuid"] == str(stage_uuid)), None)

    def stage_by_title(self, title: str) -> dict | None:
        return next((s for s in self.stages if s["title"] == title), None)

    def place(self, data_hash: str, stage: dict) -> None:
        """Move a task to ``stage``: no priority in a final stage, the platform's default where it had none."""
        meta = self.records[data_hash]["metadata"]
        meta["workflow_graph_node"] = {"uuid": stage["uuid"], "title": stage["title"]}
        if stage["stage_type"] == "DONE":
            meta["priority"] = None
        elif meta["priority"] is None:
            meta["priority"] = 0.5

    def is_final(self, metadata: dict) -> bool:
        final = {s["title"] for s in self.stages if s["stage_type"] == "DONE"}
        return (metadata["workflow_graph_node"] or {}).get("title") in final

    def signed_url(self, data_hash: str) -> str:
        return (self.image_dir / f"{data_hash}.png").resolve().as_uri()

    # --- not in the SDK: annotators, persistence ------------------------------------------------------------
    def simulate_annotation(
        self, data_hash: str, classification: str, answer: str, stage_type: str = "DONE", stage: str | None = None
    ) -> None:
        """An annotator answers the radio classification; the task moves on: to ``stage`` (a title), or to the
        first stage of ``stage_type`` (Complete by default)."""
        record = self._create_label_row(data_hash)
        record["labels"] = make_labels(self.structure, record["metadata"], classification, answer)
        record["metadata"]["label_status"] = "LABELLED"
        target = self.stage_by_title(stage) if stage is not None else self.first_stage(stage_type)
        if target is None:
            raise ValueError(f"no stage '{stage}'")
        self.place(data_hash, target)
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        rows = [self.records[h] for h in sorted(self.records)]
        atomic_write_text(self.path / "label_rows.json", json.dumps(rows, indent=1, sort_keys=True) + "\n")

    def _log_write(self, kind: str, hashes: list[str]) -> None:
        if self.path is None:
            return
        # Appended and flushed per write, so the log is complete up to a crash.
        with open(self.path / WRITE_LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps({"kind": kind, "data_hashes": hashes}) + "\n")
            log.flush()
            os.fsync(log.fileno())

    def written(self) -> list[dict]:
        """The write log on disk (empty for a project in memory or one never written to)."""
        if self.path is None or not (self.path / WRITE_LOG).exists():
            return []
        return [json.loads(line) for line in (self.path / WRITE_LOG).read_text(encoding="utf-8").splitlines()]

    @classmethod
    def load(cls, path: str | Path, faults: Faults | None = None) -> OfflineProject:
        """The export at ``path``; a missing or damaged file is an :class:`InputError` naming the file and,
        for JSON, the line and column (see :func:`check_export`)."""
        root = Path(path)
        project, rows = check_export(root)
        records = {r["metadata"]["data_hash"]: r for r in rows}
        return cls(
            records,
            project["ontology"],
            project["workflow"],
            root / "images",
            path=root,
            faults=faults,
            title=project.get("title", root.name),
            project_hash=project.get("project_hash", ""),
        )

    def write_project_json(self) -> None:
        assert self.path is not None
        atomic_write_text(
            self.path / "project.json",
            json.dumps(
                {
                    "title": self.title,
                    "project_hash": self.project_hash,
                    "ontology": self.ontology,
                    "workflow": self.stages,
                },
                indent=1,
                sort_keys=True,
            )
            + "\n",
        )


def connect(credentials: Any, project_hash: str, domain: str, path: str) -> OfflineProject:
    """Stands in for :func:`plugins.encord.credentials.login` (same arguments plus the export's path)."""
    return OfflineProject.load(path)


# --- the files of an export ---------------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    """The JSON in ``path``, or an :class:`InputError` naming the file and where it breaks."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})") from None


def check_export(root: Path) -> tuple[dict, list[dict]]:
    """``project.json`` and ``label_rows.json`` of the export at ``root``, checked as far as the stand-in
    reads them (JSON, the fields it uses, the ontology, every label dict through the SDK)."""
    from encord.objects.ontology_structure import OntologyStructure

    if not root.is_dir() or not (root / "project.json").is_file() or not (root / "label_rows.json").is_file():
        raise InputError(f"{root} is not a project export (needs project.json and label_rows.json)")
    project_path, rows_path = root / "project.json", root / "label_rows.json"
    project = read_json(project_path)
    if not isinstance(project, dict) or not isinstance(project.get("ontology"), dict):
        raise InputError(f"{project_path}: needs an object with an 'ontology' object")
    stages = project.get("workflow")
    if not isinstance(stages, list) or not all(
        isinstance(s, dict) and {"uuid", "title", "stage_type"} <= set(s) for s in stages
    ):
        raise InputError(f"{project_path}: 'workflow' must be a list of stages with uuid, title and stage_type")
    for stage in stages:
        pathways = stage.get("pathways", [])
        if not isinstance(pathways, list) or not all(
            isinstance(p, dict) and {"uuid", "name", "destination_uuid"} <= set(p) for p in pathways
        ):
            raise InputError(
                f"{project_path}: stage '{stage['title']}': 'pathways' must be a list of uuid, name and "
                "destination_uuid"
            )
    try:
        structure = OntologyStructure.from_dict(copy.deepcopy(project["ontology"]))
    except Exception as exc:  # the SDK's parser raises many types
        raise InputError(f"{project_path}: the ontology cannot be read ({type(exc).__name__}: {exc})") from None
    rows = read_json(rows_path)
    if not isinstance(rows, list):
        raise InputError(f"{rows_path}: needs a list of rows")
    seen: set[str] = set()
    for position, row in enumerate(rows):
        where = f"{rows_path}: row {position}"
        meta = row.get("metadata") if isinstance(row, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get("data_hash"), str):
            raise InputError(f"{where} needs 'metadata' with a 'data_hash'")
        missing = [k for k in ("label_hash", "data_title", "workflow_graph_node", "priority") if k not in meta]
        if missing:
            raise InputError(f"{where} ({meta['data_hash']}): metadata lacks {', '.join(missing)}")
        if meta["data_hash"] in seen:
            raise InputError(f"{where}: data hash {meta['data_hash']} appears twice")
        seen.add(meta["data_hash"])
        labels = row.get("labels")
        if labels is not None:
            try:
                read_labels(structure, meta, labels)
            except Exception as exc:  # the SDK's parser raises many types
                reason = str(exc).splitlines()[0] if str(exc) else ""
                raise InputError(
                    f"{where} ({meta['data_hash']}): labels cannot be read ({type(exc).__name__}: {reason[:200]})"
                ) from None
    return project, rows

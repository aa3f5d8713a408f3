"""The offline stand-in of an Encord workflow project: ``Project``, ``LabelRowV2``, storage items, bundles.

It backs two things: project exports on disk (``project=encord_export``, so the whole workflow runs
without credentials) and the tests (in memory, with injected failures). It mirrors the signatures of the
real SDK methods this package uses (:mod:`plugins.encord.contract`); labels are left to the real SDK
(:mod:`plugins.encord.label_dicts`), the workflow's stages and tasks live in
:mod:`plugins.encord.standin_workflow`, and an export's files are checked by :mod:`plugins.encord.export_files`.

Behaviour copied from the SDK (0.1.21x) because the package depends on it:
- ``list_label_rows_v2`` returns snapshots; acting on a row changes the platform, not the snapshot.
- ``initialise_labels`` reads the labels of a row that has a label row (``get_label_rows``), and creates
  the label row of a row that has none (``create_label_rows``: it gets a label hash; a write).
- ``initialise_storage_item(get_signed_url=True)`` then ``get_storage_item().get_signed_url()`` gives a
  fetchable image URL (here a ``file://`` URL) for any row, label row or not (a read).
- ``workflow_reopen`` does nothing for a row without a label row; ``workflow_complete`` refuses one.
- Bundled operations run when the ``with`` block ends, grouped by kind, ``bundle_size`` at a time; an
  exception inside the block cancels them; a failing batch leaves the batches before it applied.
Not in the SDK: :meth:`OfflineProject.simulate_annotation` (an annotator labelling a task), ``faults``
(a hook called before every server operation, which tests use to raise errors) and the write log: every
server operation that changes the project (``WRITE_KINDS``) is appended to ``writes`` and, for a project
on disk, to ``write_log.jsonl`` (``{"kind": ..., "data_hashes": [...]}`` per line).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from plugins.encord.export_files import check_export
from plugins.encord.label_dicts import FIXED_TIME, make_labels, read_labels, stable_uuid
from plugins.encord.standin_workflow import OfflineWorkflow
from plugins.files import atomic_write_text

# Nothing here is a config _target_: exports reach the stand-in through plugins.encord.export (see runner.targets).
__all__: list[str] = []

DEFAULT_WORKFLOW = (("Annotate 1", "ANNOTATION"), ("Review 1", "REVIEW"), ("Complete", "DONE"))
Faults = Callable[[str, list[str]], None]
WRITE_KINDS = (
    "create_label_rows", "set_priority", "workflow_reopen", "workflow_complete", "workflow_actions", "move_tasks",
    "add_issue",
)
WRITE_LOG = "write_log.jsonl"


# --- bundles -----------------------------------------------------------------------------------------------
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

    def __init__(self, project: OfflineProject, metadata: dict[str, Any]) -> None:
        self._project = project
        self._meta = copy.deepcopy(metadata)
        self._labels: Any = None
        self._storage_item: OfflineStorageItem | None = None

    def _get(self, name: str) -> Any:
        self._project._log("LabelRowV2", name)
        return self._meta[name]

    @property
    def data_hash(self) -> str:
        data_hash: str = self._get("data_hash")
        return data_hash

    @property
    def data_title(self) -> str:
        data_title: str = self._get("data_title")
        return data_title

    @property
    def label_hash(self) -> str | None:
        label_hash: str | None = self._get("label_hash")
        return label_hash

    @property
    def backing_item_uuid(self) -> UUID | None:
        # Exports name no storage items; a row's item is found by its data hash (as in current projects).
        self._project._log("LabelRowV2", "backing_item_uuid")
        return UUID(self._meta["data_hash"])

    @property
    def workflow_graph_node(self) -> Any:
        from encord.orm.label_row import WorkflowGraphNode

        return WorkflowGraphNode.from_optional_dict(self._get("workflow_graph_node"))

    @property
    def priority(self) -> float | None:
        priority: float | None = self._get("priority")
        return priority

    @property
    def task_uuid(self) -> UUID | None:
        value = self._get("task_uuid")
        return None if value is None else UUID(value)

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
        instances: list[Any] = self._labels.get_classification_instances(filter_ontology_classification, filter_frames)
        return instances

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
        records: dict[str, dict[str, Any]],
        ontology: dict[str, Any],
        stages: Sequence[dict[str, Any]],
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

    def _create_label_row(self, data_hash: str) -> dict[str, Any]:
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

    def stage_node(self, stage_type: str) -> dict[str, Any]:
        stage = self.first_stage(stage_type)
        return {"uuid": stage["uuid"], "title": stage["title"]}

    def first_stage(self, stage_type: str) -> dict[str, Any]:
        return next(s for s in self.stages if s["stage_type"] == stage_type)

    def stage_by_uuid(self, stage_uuid: Any) -> dict[str, Any] | None:
        return next((s for s in self.stages if s["uuid"] == str(stage_uuid)), None)

    def stage_by_title(self, title: str) -> dict[str, Any] | None:
        return next((s for s in self.stages if s["title"] == title), None)

    def place(self, data_hash: str, stage: dict[str, Any]) -> None:
        """Move a task to ``stage``: no priority in a final stage, the platform's default where it had none."""
        meta = self.records[data_hash]["metadata"]
        meta["workflow_graph_node"] = {"uuid": stage["uuid"], "title": stage["title"]}
        if stage["stage_type"] == "DONE":
            meta["priority"] = None
        elif meta["priority"] is None:
            meta["priority"] = 0.5

    def is_final(self, metadata: dict[str, Any]) -> bool:
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

    def written(self) -> list[dict[str, Any]]:
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

"""Reading a project: rows, labels, workflow stages and signed image URLs. Nothing here changes the platform.

On a row without a label row, ``initialise_labels`` creates one (and moves its task to LABEL_IN_PROGRESS),
so labels are read only where a label row exists (the other rows have no labels to read), and images come
through each row's storage item, which needs no label row. Creating label rows is a planned action that
only ``act.apply=true`` performs (see :mod:`plugins.encord.writing`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tqdm import tqdm

from plugins.encord.retry import Retry
from plugins.errors import InputError

# Nothing here is a config _target_: these are the package's helpers (see runner.targets).
__all__ = []


@dataclass(frozen=True)
class RowInfo:
    """One row as the runner sees it; ``answer`` is None where there is no label (or it was not read)."""

    data_hash: str
    title: str
    stage: str | None
    priority: float | None
    task_uuid: str | None
    label_hash: str | None
    answer: str | None = None


Element = TypeVar("Element")


def chunks(items: Sequence[Element], size: int) -> Iterator[Sequence[Element]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Reader:
    """Read-only access to one project (a live ``Project`` or the offline stand-in)."""

    def __init__(
        self, project: Any, classification: str, bundle_size: int = 100, retry: Retry | None = None
    ) -> None:
        self.project = project
        self.classification = classification
        self.bundle_size = int(bundle_size)
        self.retry = retry or Retry()
        self._attribute: Any = None
        self._workflow: list[Any] | None = None

    # --- ontology and workflow ------------------------------------------------------------------------------
    def radio_attribute(self) -> Any:
        """The radio attribute named in the config; its options are the classes, in ontology order."""
        if self._attribute is None:
            from encord.objects.attributes import RadioAttribute

            structure = self.project.ontology_structure
            try:
                self._attribute = structure.get_child_by_title(title=self.classification, type_=RadioAttribute)
            except Exception:
                radios = [
                    a.name for c in structure.classifications for a in c.attributes if isinstance(a, RadioAttribute)
                ]
                raise InputError(
                    f"the ontology has no radio classification named '{self.classification}' "
                    f"(radio classifications: {', '.join(radios) or 'none'}); set project.source.classification"
                ) from None
        return self._attribute

    def class_names(self) -> list[str]:
        return [option.title for option in self.radio_attribute().options]

    def workflow(self) -> list[Any]:
        """The workflow's stage objects, in workflow order (read once)."""
        if self._workflow is None:
            self._workflow = self.retry.call("read workflow", lambda: list(self.project.workflow.stages))
        return self._workflow

    def stage(self, title: str) -> Any:
        """The stage object titled ``title``; InputError when the workflow has none."""
        for stage in self.workflow():
            if stage.title == title:
                return stage
        raise InputError(f"the workflow has no stage '{title}' (stages: {', '.join(self.stage_kinds())})")

    def stage_kinds(self) -> dict[str, str]:
        """Stage title -> kind (``ANNOTATION``, ``REVIEW``, ``AGENT``, ``DONE``, ...), in workflow order."""
        return {stage.title: str(getattr(stage.stage_type, "value", stage.stage_type)) for stage in self.workflow()}

    def stage_info(self) -> dict[str, dict[str, Any]]:
        """Stage title -> ``{"kind": ..., "pathways": [names]}`` (pathways of Agent stages; empty elsewhere)."""
        return {
            title: {
                "kind": kind,
                "pathways": [p.name for p in self.stage(title).pathways] if kind == "AGENT" else [],
            }
            for title, kind in self.stage_kinds().items()
        }

    def stage_titles(self) -> tuple[str | None, set[str]]:
        """The first annotation stage (where ``workflow_reopen`` sends tasks) and the final stage titles."""
        kinds = self.stage_kinds()
        first = next((title for title, kind in kinds.items() if kind == "ANNOTATION"), None)
        return first, {title for title, kind in kinds.items() if kind == "DONE"}

    def tasks(self, title: str, data_hashes: Sequence[str]) -> dict[str, Any]:
        """The tasks of ``data_hashes`` waiting at stage ``title``, by data hash."""
        stage = self.stage(title)
        return {str(task.data_hash): task for task in stage.get_tasks(data_hash=list(data_hashes))}

    # --- rows ---------------------------------------------------------------------------------------------
    def list_rows(self, data_hashes: Sequence[str] | None = None) -> list[Any]:
        """Every row (with a label row or not), or those of ``data_hashes``, with their workflow stage."""

        def call() -> list[Any]:
            if data_hashes is None:
                return list(self.project.list_label_rows_v2(include_workflow_graph_node=True))
            return list(
                self.project.list_label_rows_v2(data_hashes=list(data_hashes), include_workflow_graph_node=True)
            )

        return self.retry.call("list label rows", call)

    def initialise_labels(self, rows: Sequence[Any], progress: bool = True) -> None:
        """Load the labels of the rows that have a label row, in bundles; the others are left alone."""
        readable = [row for row in rows if row.label_hash is not None]
        with tqdm(total=len(readable), desc="read labels", unit="row", disable=None if progress else True,
                  leave=False) as bar:
            for chunk in chunks(readable, self.bundle_size):

                def call(chunk: Sequence[Any] = chunk) -> None:
                    with self.project.create_bundle(bundle_size=self.bundle_size) as bundle:
                        for row in chunk:
                            # overwrite=True makes a retried bundle safe: rows it already filled are filled again.
                            row.initialise_labels(overwrite=True, bundle=bundle, include_signed_url=False)

                self.retry.call("read labels", call)
                bar.update(len(chunk))

    def signed_urls(self, rows: Sequence[Any], progress: bool = True) -> dict[str, str | None]:
        """A signed image URL per row, from its storage item (no label row needed); None where it has none."""
        linked = [row for row in rows if row.backing_item_uuid is not None]
        urls: dict[str, str | None] = {str(row.data_hash): None for row in rows}
        with tqdm(total=len(linked), desc="sign image URLs", unit="row", disable=None if progress else True,
                  leave=False) as bar:
            for chunk in chunks(linked, self.bundle_size):

                def call(chunk: Sequence[Any] = chunk) -> None:
                    with self.project.create_bundle(bundle_size=self.bundle_size) as bundle:
                        for row in chunk:
                            row.initialise_storage_item(get_signed_url=True, bundle=bundle)

                self.retry.call("sign image URLs", call)
                for row in chunk:
                    urls[str(row.data_hash)] = row.get_storage_item().get_signed_url()
                bar.update(len(chunk))
        return urls

    def describe(self, row: Any) -> RowInfo:
        """Identity, workflow state and (for rows whose labels were read) the answer of one row."""
        node = row.workflow_graph_node
        try:
            priority, task = row.priority, row.task_uuid
        except Exception:  # WrongProjectTypeError: a project without a workflow has neither
            priority, task = None, None
        return RowInfo(
            data_hash=str(row.data_hash),
            title=str(row.data_title),
            stage=None if node is None else node.title,
            priority=None if priority is None else float(priority),
            task_uuid=None if task is None else str(task),
            label_hash=row.label_hash,
            answer=self.answer(row),
        )

    def answer(self, row: Any) -> str | None:
        """The option chosen for the configured radio classification, or None (unlabelled or not read)."""
        if row.label_hash is None:
            return None
        attribute = self.radio_attribute()
        try:
            instances = row.get_classification_instances()
        except Exception:  # a row whose labels were not read has none to give
            return None
        for instance in instances:
            if any(a.name == attribute.name for a in instance.ontology_item.attributes):
                option = instance.get_answer(attribute=attribute)
                if option is not None and hasattr(option, "title"):
                    title: str = option.title  # an SDK Option's title
                    return title
        return None

    def state(self, row: Any) -> RowInfo:
        """Stage, priority and label row of a freshly listed row (labels are not needed to judge an action)."""
        node = row.workflow_graph_node
        try:
            priority = row.priority
        except Exception:
            priority = None
        return RowInfo(
            data_hash=str(row.data_hash),
            title=str(row.data_title),
            stage=None if node is None else node.title,
            priority=None if priority is None else float(priority),
            task_uuid=None,
            label_hash=row.label_hash,
        )

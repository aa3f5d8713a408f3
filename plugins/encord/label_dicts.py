"""Label-row dicts and row metadata of the offline stand-in, built and read by the real SDK.

The stand-in (:mod:`plugins.encord.standin_project`) leaves everything about labels to ``encord`` itself: a
label-row dict is made by a detached ``LabelRowV2`` (``to_encord_dict``) and read back by one
(``from_labels_dict``), so a classification read from an export is read exactly as from a live project. Row
metadata has the shape ``LabelRowMetadata.from_dict`` reads, which is what ``list_label_rows_v2`` returns.

Ids and times are fixed (``stable_uuid``, ``FIXED_TIME``) where the SDK would draw them at random or from the
clock, so an export generated twice is the same export.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from types import SimpleNamespace
from typing import Any

# Nothing here is a config _target_: these are the package's helpers (see runner.targets).
__all__: list[str] = []

FIXED_TIME = datetime(2024, 1, 1, 12, 0, 0)


def stable_uuid(*parts: object) -> str:
    """Deterministic ids, so an export generated twice is the same export."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "al-runner/" + "/".join(map(str, parts))))


def detached_ontology(structure: Any) -> Any:
    """What a detached ``LabelRowV2`` needs of an ``Ontology``: only its ``structure`` (a real ``Ontology``
    would need a logged-in client)."""
    return SimpleNamespace(structure=structure)


def make_labels(
    structure: Any,
    metadata: dict[str, Any],
    classification: str | None = None,
    answer: str | None = None,
) -> dict[str, Any]:
    """The SDK's label-row dict of an image row, empty or with one radio answer."""
    from encord.objects import LabelRowV2
    from encord.objects.attributes import RadioAttribute
    from encord.orm.storage import CustomerProvidedImageMetadata

    media = CustomerProvidedImageMetadata(
        mime_type="image/png",
        file_size=int(metadata.get("file_size", 0) or 0),
        height=int(metadata["height"]),
        width=int(metadata["width"]),
    )
    row = LabelRowV2.from_media_metadata(detached_ontology(structure), media)
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


def read_labels(structure: Any, metadata: dict[str, Any], labels: dict[str, Any]) -> Any:
    """A detached SDK ``LabelRowV2`` holding ``labels``."""
    from encord.objects import LabelRowV2
    from encord.orm.label_row import LabelRowMetadata

    no_client: Any = None  # a detached row never calls the server
    row = LabelRowV2(LabelRowMetadata.from_dict(metadata), no_client, detached_ontology(structure))
    row.from_labels_dict(copy.deepcopy(labels))
    return row


def new_metadata(
    data_hash: str,
    title: str,
    stage: dict[str, Any] | None,
    priority: float | None,
    width: int,
    height: int,
    dataset_hash: str = "",
    dataset_title: str = "",
) -> dict[str, Any]:
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


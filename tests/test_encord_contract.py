"""Every SDK class, method and keyword ``plugins.encord`` uses exists on the installed ``encord``, and the
offline stand-in offers the same names: an SDK change fails here, not in a user's project."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

from plugins.encord.actions import plan
from plugins.encord.contract import SDK_CALLS
from plugins.encord.offline import OfflineLabelRow, OfflineProject, OfflineStorageItem
from plugins.encord.platform import EncordPlatform
from plugins.encord.retry import Retry
from tests.encord_fake import memory_project

STAND_IN = {
    "encord.project.Project": OfflineProject,
    "encord.objects.LabelRowV2": OfflineLabelRow,
    "encord.storage.StorageItem": OfflineStorageItem,
}
SHORT = {
    "Project": "encord.project.Project",
    "LabelRowV2": "encord.objects.LabelRowV2",
    "Workflow": "encord.workflow.workflow.Workflow",
    "WorkflowStageBase": "encord.workflow.common.WorkflowStageBase",
    "AnnotationStage": "encord.workflow.stages.annotation.AnnotationStage",
    "StorageItem": "encord.storage.StorageItem",
}


def resolve(path: str) -> type:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def has_attribute(cls: type, name: str) -> bool:
    if hasattr(cls, name):
        return True
    for base in cls.__mro__:
        if name in getattr(base, "__annotations__", {}) or name in getattr(base, "model_fields", {}):
            return True
        if dataclasses.is_dataclass(base) and name in {f.name for f in dataclasses.fields(base)}:
            return True
    return False


@pytest.mark.parametrize(
    "cls_path, name, kwargs", SDK_CALLS, ids=[f"{c.rsplit('.', 1)[1]}.{n}" for c, n, _ in SDK_CALLS]
)
def test_sdk_has_every_call_the_package_makes(cls_path, name, kwargs):
    cls = resolve(cls_path)
    assert has_attribute(cls, name), f"{cls_path}.{name} is gone from encord"
    if kwargs is not None:
        parameters = inspect.signature(getattr(cls, name)).parameters
        missing = [k for k in kwargs if k not in parameters]
        assert not missing, f"{cls_path}.{name} no longer takes {missing}"


@pytest.mark.parametrize(
    "cls_path, name, kwargs", [c for c in SDK_CALLS if c[0] in STAND_IN and c[2] is not None]
)
def test_stand_in_mirrors_the_sdk_signatures(cls_path, name, kwargs):
    real = inspect.signature(getattr(resolve(cls_path), name)).parameters
    fake = inspect.signature(getattr(STAND_IN[cls_path], name)).parameters
    assert list(fake) == list(real), f"stand-in {name} differs from the SDK: {list(fake)} vs {list(real)}"
    for key in kwargs:
        assert fake[key].kind == real[key].kind


def test_a_whole_import_and_act_cycle_uses_only_listed_calls(tmp_path):
    project = memory_project(tmp_path, n=20, labelled=6)
    platform = EncordPlatform(
        project, "digit", tmp_path / "cache", bundle_size=4, retry=Retry(2, 0.0, sleep=lambda s: None)
    )
    data = platform.read()
    stages = platform.stages()
    items = [
        {"data_hash": h, "title": t, "stage": s, "has_label_row": bool(r)}
        for h, t, s, r, label in zip(
            data.item_ids, data.extra["title"], data.extra["stage"], data.extra["has_label_row"], data.labels,
            strict=True,
        )
        if label < 0
    ]
    selected = [{**item, "rank": r} for r, item in enumerate(items[:3], 1)]
    records = plan(selected, items[3:], [], [], stages, 0, actions=["priority", "complete"],
                   priority_floor=0.6, rest_priority=None, tag=None)
    platform.apply(records)
    assert all(r["status"] == "applied" for r in records)
    labelled = next(h for h, r in project.records.items() if r["metadata"]["label_hash"] is not None)
    platform.apply([{"data_hash": labelled, "action": "reopen", "value": None, "status": "planned"}])
    for cls, name, kwargs in project.calls:
        entry = next((e for e in SDK_CALLS if e[0] == SHORT[cls] and e[1] == name), None)
        assert entry is not None, f"the package used {cls}.{name}, which SDK_CALLS does not list"
        if entry[2] is not None:
            assert set(kwargs) <= set(entry[2]), f"{cls}.{name} got {kwargs}, SDK_CALLS lists {entry[2]}"
    used = {(cls, name) for cls, name, _ in project.calls}
    for expected in ("set_priority", "workflow_complete", "workflow_reopen", "initialise_storage_item"):
        assert ("LabelRowV2", expected) in used
    assert ("StorageItem", "get_signed_url") in used

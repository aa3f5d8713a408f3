"""Every SDK class, method and keyword the adapter uses exists on the installed ``encord``, and the offline
stand-in offers the same names: an SDK change fails here, not in a user's project."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

from plugins.actions.encord import plan
from plugins.sources.encord_offline import OfflineLabelRow, OfflineProject
from plugins.sources.encord_sdk import SDK_CALLS, EncordAdapter, Retry
from tests.encord_fake import memory_project

STAND_IN = {
    "encord.project.Project": OfflineProject,
    "encord.objects.LabelRowV2": OfflineLabelRow,
}
SHORT = {
    "Project": "encord.project.Project",
    "LabelRowV2": "encord.objects.LabelRowV2",
    "Workflow": "encord.workflow.workflow.Workflow",
    "WorkflowStageBase": "encord.workflow.common.WorkflowStageBase",
    "AnnotationStage": "encord.workflow.stages.annotation.AnnotationStage",
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
def test_sdk_has_every_call_the_adapter_makes(cls_path, name, kwargs):
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
    adapter = EncordAdapter(project, "digit", bundle_size=4, retry=Retry(2, 0.0, sleep=lambda s: None))
    _, infos = adapter.read_rows()
    adapter.class_names()
    _, final = adapter.stage_titles()
    items = [
        {"data_hash": i.data_hash, "title": i.title, "stage": i.stage} for i in infos if i.answer is None
    ]
    selected = [{**item, "rank": r} for r, item in enumerate(items[:3], 1)]
    records = plan(selected, items[3:], [], final, 0, actions=["relabel", "priority", "complete"])
    adapter.apply(records)
    adapter.apply(
        [{"data_hash": items[4]["data_hash"], "action": "reopen", "value": None, "status": "planned"}]
    )
    for cls, name, kwargs in project.calls:
        entry = next((e for e in SDK_CALLS if e[0] == SHORT[cls] and e[1] == name), None)
        assert entry is not None, f"the adapter used {cls}.{name}, which SDK_CALLS does not list"
        if entry[2] is not None:
            assert set(kwargs) <= set(entry[2]), f"{cls}.{name} got {kwargs}, SDK_CALLS lists {entry[2]}"
    used = {(cls, name) for cls, name, _ in project.calls}
    assert ("LabelRowV2", "set_priority") in used and ("LabelRowV2", "workflow_complete") in used

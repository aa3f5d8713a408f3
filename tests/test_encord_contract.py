"""Every SDK class, method and keyword ``plugins.encord`` uses exists on the installed ``encord``, and the
offline stand-in offers the same names: an SDK change fails here, not in a user's project."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

from plugins.encord import standin_workflow
from plugins.encord.actions import ActionPlanner
from plugins.encord.contract import SDK_CALLS
from plugins.encord.platform import EncordPlatform
from plugins.encord.retry import Retry
from plugins.encord.standin_project import OfflineLabelRow, OfflineProject, OfflineStorageItem
from tests.encord_fake import memory_project, triage_workflow

STAND_IN = {
    "encord.project.Project": OfflineProject,
    "encord.objects.LabelRowV2": OfflineLabelRow,
    "encord.storage.StorageItem": OfflineStorageItem,
    "encord.workflow.stages.annotation.AnnotationStage": standin_workflow.OfflineAnnotationStage,
    "encord.workflow.stages.review.ReviewStage": standin_workflow.OfflineReviewStage,
    "encord.workflow.stages.final.FinalStage": standin_workflow.OfflineFinalStage,
    "encord.workflow.stages.agent.AgentStage": standin_workflow.OfflineAgentStage,
    "encord.workflow.stages.annotation.AnnotationTask": standin_workflow.OfflineAnnotationTask,
    "encord.workflow.stages.review.ReviewTask": standin_workflow.OfflineReviewTask,
    "encord.workflow.stages.final.FinalStageTask": standin_workflow.OfflineFinalStageTask,
    "encord.workflow.stages.agent.AgentTask": standin_workflow.OfflineAgentTask,
    "encord.issues.issue_client.TaskIssues": standin_workflow.OfflineTaskIssues,
}
SHORT = {
    "Project": "encord.project.Project",
    "LabelRowV2": "encord.objects.LabelRowV2",
    "Workflow": "encord.workflow.workflow.Workflow",
    "WorkflowStageBase": "encord.workflow.common.WorkflowStageBase",
    "StorageItem": "encord.storage.StorageItem",
    "AnnotationStage": "encord.workflow.stages.annotation.AnnotationStage",
    "ReviewStage": "encord.workflow.stages.review.ReviewStage",
    "FinalStage": "encord.workflow.stages.final.FinalStage",
    "AgentStage": "encord.workflow.stages.agent.AgentStage",
    "AgentPathway": "encord.workflow.stages.agent.AgentPathway",
    "AnnotationTask": "encord.workflow.stages.annotation.AnnotationTask",
    "ReviewTask": "encord.workflow.stages.review.ReviewTask",
    "FinalStageTask": "encord.workflow.stages.final.FinalStageTask",
    "AgentTask": "encord.workflow.stages.agent.AgentTask",
    "TaskIssues": "encord.issues.issue_client.TaskIssues",
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


@pytest.mark.slow
def test_a_whole_import_and_act_cycle_uses_only_listed_calls(tmp_path):
    project = memory_project(tmp_path, n=20, labelled=6)
    platform = EncordPlatform(
        project, "digit", tmp_path / "cache", bundle_size=4, retry=Retry(2, 0.0, sleep=lambda s: None)
    )
    data = platform.read()
    stages = platform.workflow()
    items = [
        {"data_hash": h, "title": t, "stage": s, "has_label_row": bool(r)}
        for h, t, s, r, label in zip(
            data.item_ids, data.extra["title"], data.extra["stage"], data.extra["has_label_row"], data.labels,
            strict=True,
        )
        if label < 0
    ]
    selected = [{**item, "rank": r} for r, item in enumerate(items[:3], 1)]
    planner = ActionPlanner(actions=["priority", "complete"], priority_floor=0.6, rest_priority=None, tag=None)
    records = planner(selected, items[3:], [], [], stages, 0)
    platform.apply(records)
    assert all(r["status"] == "applied" for r in records)
    labelled = next(h for h, r in project.records.items() if r["metadata"]["label_hash"] is not None)
    platform.apply([{"data_hash": labelled, "action": "reopen", "value": None, "status": "planned"}])
    assert_listed(project)
    used = {(cls, name) for cls, name, _ in project.calls}
    for expected in ("set_priority", "workflow_complete", "workflow_reopen", "initialise_storage_item"):
        assert ("LabelRowV2", expected) in used
    assert ("StorageItem", "get_signed_url") in used


def assert_listed(project: OfflineProject) -> None:
    for cls, name, kwargs in project.calls:
        entry = next((e for e in SDK_CALLS if e[0] == SHORT[cls] and e[1] == name), None)
        assert entry is not None, f"the package used {cls}.{name}, which SDK_CALLS does not list"
        if entry[2] is not None:
            assert set(kwargs) <= set(entry[2]), f"{cls}.{name} got {kwargs}, SDK_CALLS lists {entry[2]}"


@pytest.mark.slow
def test_relabels_routes_and_issues_use_only_listed_calls(tmp_path):
    project = triage_workflow(memory_project(tmp_path, n=20, labelled=8))
    platform = EncordPlatform(
        project, "digit", tmp_path / "cache", bundle_size=4, retry=Retry(2, 0.0, sleep=lambda s: None)
    )
    platform.read()
    stages = platform.workflow()
    assert stages["Triage"] == {"kind": "AGENT", "pathways": ["annotate", "later"]}
    waiting = sorted(h for h, r in project.records.items() if r["metadata"]["label_hash"] is None)
    done = sorted(h for h, r in project.records.items() if r["metadata"]["label_hash"] is not None)
    in_review = done[1]
    project.place(in_review, project.stage_by_title("Review 1"))

    def item(h: str, rank: int | None = None, **more: object) -> dict:
        meta = project.records[h]["metadata"]
        return {"data_hash": h, "title": meta["data_title"], "stage": meta["workflow_graph_node"]["title"],
                "has_label_row": True, "rank": rank, **more}

    suspect = {"given": "3", "suggested": "5", "score": 0.9}
    routing = ActionPlanner(actions=["priority", "tag"], priority_floor=0.6, rest_priority=None, tag=None,
                            agent_stage="Triage", agent_selected="annotate", agent_rest="later")
    records = routing([item(h, r) for r, h in enumerate(waiting[:2], 1)], [item(h) for h in waiting[2:]], [],
                      [item(done[0], 1, **suspect), item(in_review, 2, **suspect)], stages, 0)
    relabel = ActionPlanner(actions=[], priority_floor=0.6, rest_priority=None, tag=None, relabel_stage="Later")
    moved = relabel([], [], [], [item(done[2], 1, **suspect)], stages, 0)
    remote = [r for r in records + moved if r["action"] not in ("tag", "untag")]  # tags are the run store's
    platform.apply(remote)
    assert all(r["status"] == "applied" for r in remote)
    node = {h: r["metadata"]["workflow_graph_node"]["title"] for h, r in project.records.items()}
    assert [node[h] for h in waiting[:2]] == ["Annotate 1"] * 2 and {node[h] for h in waiting[2:]} == {"Later"}
    assert node[done[0]] == "Annotate 1" and node[in_review] == "Annotate 1" and node[done[2]] == "Later"
    assert len(project.records[done[0]]["issues"]) == 1 and project.records[done[0]]["issues"][0]["tags"] == [
        "label_issue"
    ]
    assert_listed(project)
    used = {(cls, name) for cls, name, _ in project.calls}
    for expected in [("AgentTask", "proceed"), ("ReviewTask", "reject"), ("FinalStageTask", "move"),
                     ("TaskIssues", "add_file_issue"), ("TaskIssues", "list"), ("AgentStage", "get_tasks")]:
        assert expected in used

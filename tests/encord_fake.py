"""In-memory Encord projects for the tests: the offline stand-in (``plugins.encord.standin_project``) with
no file behind it, failure injection, and a login that opens an export instead of a live project."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plugins.encord.export import make_example
from plugins.encord.label_dicts import stable_uuid
from plugins.encord.standin_project import OfflineProject

_TEMPLATES: dict[tuple[int, int, int], Path] = {}


def example_export(tmp_path: Path, n: int = 40, labelled: int = 12, wrong: int = 0) -> Path:
    """A small MNIST export under ``tmp_path`` (generated once per size per session, then copied); ``wrong`` of
    the labelled rows answered with a wrong digit."""
    key = (n, labelled, wrong)
    if key not in _TEMPLATES or not _TEMPLATES[key].exists():
        template = Path(tmp_path.parent) / f"encord-template-{n}-{labelled}-{wrong}"
        make_example(template, n=n, labelled=labelled, wrong=wrong)
        _TEMPLATES[key] = template
    target = tmp_path / "export"
    shutil.copytree(_TEMPLATES[key], target)
    return target


def memory_project(
    tmp_path: Path, n: int = 40, labelled: int = 12, faults: Callable | None = None, wrong: int = 0
) -> OfflineProject:
    """A project held in memory only (images stay on disk, as signed URLs point somewhere)."""
    project = OfflineProject.load(example_export(tmp_path, n, labelled, wrong), faults=faults)
    project.path = None
    return project


def answer_key(project_dir: Path) -> dict[str, str]:
    return json.loads((project_dir / "answer_key.json").read_text(encoding="utf-8"))


def connect(credentials: Any, project_hash: str, domain: str, path: str) -> OfflineProject:
    """Stands in for :func:`plugins.encord.credentials.login` (same arguments plus the export's path), so a test
    runs ``project=encord`` on an export: ``allowed_packages=[tests.encord_fake]`` and
    ``+project.source.connect._target_=tests.encord_fake.connect`` (the plugins offer no such target)."""
    return OfflineProject.load(path)


class Faults:
    """Fails chosen server operations: ``transient`` times with a retryable error, or for good."""

    def __init__(self) -> None:
        self.rules: list[dict] = []
        self.raised: list[tuple[str, list[str]]] = []

    def fail(
        self,
        kind: str,
        times: int = 1,
        transient: bool = True,
        when: Callable[[list[str]], bool] | None = None,
    ) -> Faults:
        self.rules.append({"kind": kind, "times": times, "transient": transient, "when": when})
        return self

    def __call__(self, kind: str, hashes: list[str]) -> None:
        from encord.exceptions import AuthorisationError, GenericServerError

        for rule in self.rules:
            if rule["kind"] == kind and rule["times"] > 0 and (rule["when"] is None or rule["when"](hashes)):
                rule["times"] -= 1
                self.raised.append((kind, hashes))
                if rule["transient"]:
                    raise GenericServerError("503 Service Unavailable")
                raise AuthorisationError("not allowed for this task")


def triage_workflow(project: OfflineProject) -> OfflineProject:
    """The project with an Agent stage first: new tasks wait at "Triage", whose pathways lead to "Annotate 1"
    ("annotate") or to a second annotation stage "Later" ("later"); then review and Complete. Every unlabelled
    task waits at Triage."""

    def stage(title: str, kind: str, **more: object) -> dict:
        return {"uuid": stable_uuid("stage", title), "title": title, "stage_type": kind, **more}

    annotate, later = stage("Annotate 1", "ANNOTATION"), stage("Later", "ANNOTATION")
    pathways = [
        {"uuid": stable_uuid("pathway", name), "name": name, "destination_uuid": target["uuid"]}
        for name, target in (("annotate", annotate), ("later", later))
    ]
    triage = stage("Triage", "AGENT", pathways=pathways)
    project.stages = [triage, annotate, later, stage("Review 1", "REVIEW"), stage("Complete", "DONE")]
    for record in project.records.values():
        meta = record["metadata"]
        title = (meta["workflow_graph_node"] or {}).get("title")
        found = None if title is None else project.stage_by_title(title)
        target = triage if title == "Annotate 1" else found or annotate
        meta["workflow_graph_node"] = {"uuid": target["uuid"], "title": target["title"]}
    project.save()
    return project

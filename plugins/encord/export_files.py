"""The files of a project export on disk, read and checked before the offline stand-in uses them.

An export (see :mod:`plugins.encord.export`) holds ``project.json`` (title, project hash, ontology, workflow
stages) and ``label_rows.json`` (one ``{"metadata": ..., "labels": ... | null}`` per data unit). Both are checked
as far as the stand-in reads them, so a damaged export fails on opening, in one line naming the file (and, for
JSON, the line and column), never later in the middle of a round.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from plugins.encord.label_dicts import read_labels
from plugins.errors import InputError

# Nothing here is a config _target_: these are the package's helpers (see runner.targets).
__all__: list[str] = []

STAGE_KEYS = {"uuid", "title", "stage_type"}
PATHWAY_KEYS = {"uuid", "name", "destination_uuid"}
ROW_KEYS = ("label_hash", "data_title", "workflow_graph_node", "priority")


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


def check_export(root: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``project.json`` and ``label_rows.json`` of the export at ``root``, checked as far as the stand-in
    reads them (JSON, the fields it uses, the ontology, every label dict through the SDK)."""
    if not root.is_dir() or not (root / "project.json").is_file() or not (root / "label_rows.json").is_file():
        raise InputError(f"{root} is not a project export (needs project.json and label_rows.json)")
    project, structure = check_project(root / "project.json")
    return project, check_rows(root / "label_rows.json", structure)


def check_project(path: Path) -> tuple[dict[str, Any], Any]:
    """``project.json`` and its ontology as the SDK's ``OntologyStructure``."""
    from encord.objects.ontology_structure import OntologyStructure

    project = read_json(path)
    if not isinstance(project, dict) or not isinstance(project.get("ontology"), dict):
        raise InputError(f"{path}: needs an object with an 'ontology' object")
    check_stages(path, project.get("workflow"))
    try:
        structure = OntologyStructure.from_dict(copy.deepcopy(project["ontology"]))
    except Exception as exc:  # the SDK's parser raises many types
        raise InputError(f"{path}: the ontology cannot be read ({type(exc).__name__}: {exc})") from None
    return project, structure


def check_stages(path: Path, stages: Any) -> None:
    """The workflow of ``project.json``: stages with the keys the stand-in reads, and their Agent pathways."""
    if not isinstance(stages, list) or not all(isinstance(s, dict) and set(s) >= STAGE_KEYS for s in stages):
        raise InputError(f"{path}: 'workflow' must be a list of stages with uuid, title and stage_type")
    for stage in stages:
        pathways = stage.get("pathways", [])
        if not isinstance(pathways, list) or not all(isinstance(p, dict) and set(p) >= PATHWAY_KEYS for p in pathways):
            raise InputError(
                f"{path}: stage '{stage['title']}': 'pathways' must be a list of uuid, name and destination_uuid"
            )


def check_rows(path: Path, structure: Any) -> list[dict[str, Any]]:
    """``label_rows.json``: a list of rows with distinct data hashes, each label dict readable by the SDK."""
    rows = read_json(path)
    if not isinstance(rows, list):
        raise InputError(f"{path}: needs a list of rows")
    seen: set[str] = set()
    for position, row in enumerate(rows):
        check_row(f"{path}: row {position}", row, seen, structure)
    return rows


def check_row(where: str, row: Any, seen: set[str], structure: Any) -> None:
    """One row of ``label_rows.json`` (``where`` names it); adds its data hash to ``seen``."""
    meta = row.get("metadata") if isinstance(row, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("data_hash"), str):
        raise InputError(f"{where} needs 'metadata' with a 'data_hash'")
    missing = [k for k in ROW_KEYS if k not in meta]
    if missing:
        raise InputError(f"{where} ({meta['data_hash']}): metadata lacks {', '.join(missing)}")
    if meta["data_hash"] in seen:
        raise InputError(f"{where}: data hash {meta['data_hash']} appears twice")
    seen.add(meta["data_hash"])
    labels = row.get("labels")
    if labels is None:
        return
    try:
        read_labels(structure, meta, labels)
    except Exception as exc:  # the SDK's parser raises many types
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(
            f"{where} ({meta['data_hash']}): labels cannot be read ({type(exc).__name__}: {reason[:200]})"
        ) from None

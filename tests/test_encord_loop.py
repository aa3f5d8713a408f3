"""The Encord loop as annotation teams run it, on the offline stand-in: trusted labels only, a test split that
takes no annotator's time, label suspects sent back with an issue, Agent stages routed by rank, stopping in
human mode, and metrics on the original images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plugins.encord import export as encord_export
from plugins.encord.platform import EncordPlatform
from plugins.encord.standin_project import OfflineProject
from plugins.errors import InputError
from runner.errors import ConfigError
from runner.store import Store
from tests.encord_fake import example_export, triage_workflow
from tests.test_encord_cycle import invoke, platform, record, written


def stored(run_dir: Path) -> tuple[dict[str, int], dict[str, str]]:
    """The store's labels (data hash -> class) and splits (data hash -> split)."""
    store = Store(run_dir / "state.sqlite")
    try:
        ids = store.item_ids()
        labelled, labels = store.labeled()
        return ({ids[i]: int(y) for i, y in zip(labelled, labels, strict=True)},
                dict(zip(ids, store.splits().tolist(), strict=True)))
    finally:
        store.close()


def answers(export: Path) -> dict[str, str]:
    return json.loads((export / "answer_key.json").read_text())


def reviewed(export: Path, n: int, wrong: int = 0) -> list[str]:
    """Annotators answer ``n`` waiting tasks (``wrong`` of them wrongly) and send them to "Review 1"."""
    project = OfflineProject.load(export)
    key = answers(export)
    waiting = sorted(h for h, r in project.records.items() if r["metadata"]["label_hash"] is None)[:n]
    for position, data_hash in enumerate(waiting):
        answer = key[data_hash] if position >= wrong else str((int(key[data_hash]) + 1) % 10)
        project.simulate_annotation(data_hash, "digit", answer, stage="Review 1")
    return waiting


def planned(run_dir: Path, round_: int, action: str) -> list[dict]:
    return [r for r in record(run_dir, round_)["records"] if r["action"] == action]


# --- trusted labels --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_labels_in_review_are_listed_but_neither_trained_on_nor_selected(tmp_path):
    export = example_export(tmp_path, n=60, labelled=20)
    in_review = reviewed(export, 6, wrong=1)
    run_dir = tmp_path / "project"
    invoke(run_dir, export, "act.apply=false", "filters.stages=null")
    labels, _ = stored(run_dir)
    assert not set(in_review) & set(labels) and len(labels) > 0
    touched = {r["data_hash"] for r in record(run_dir, 0)["records"]}
    assert not set(in_review) & touched  # in annotators' hands: not candidates either

    read = {
        name: EncordPlatform(OfflineProject.load(export), "digit", tmp_path / "cache", trusted_stages=trusted).read()
        for name, trusted in (("default", None), ("trusting", ["Complete", "Review 1"]))
    }
    key = answers(export)
    for name, data in read.items():
        position = {h: i for i, h in enumerate(data.item_ids)}
        rows = [position[h] for h in in_review]
        given = [str(data.extra["unconfirmed_label"][i] if name == "default" else data.labels[i]) for i in rows]
        # Listed with their answers either way; trusting review means trusting its mistakes too.
        assert sum(g != key[h] for g, h in zip(given, in_review, strict=True)) == 1
        assert (data.labels[rows] >= 0).all() == (name == "trusting")


@pytest.mark.slow
def test_a_stage_the_workflow_lacks_is_refused_before_anything_is_written(tmp_path):
    export = example_export(tmp_path, n=60, labelled=20)
    for override, message in [
        ("project.source.trusted_stages=[Complete,Reveiw 1]", "project.source.trusted_stages: 'Reveiw 1' is not"),
        ("project.source.test_stage=Holdout", "project.source.test_stage: 'Holdout' is not a stage"),
        ("act.function.relabel_stage=Later", "relabel_stage 'Later' is not a stage of the workflow"),
        ("act.function.agent_stage=Annotate 1", "agent_stage 'Annotate 1' is not an Agent stage"),
    ]:
        run_dir = tmp_path / "refused"
        with pytest.raises((ConfigError, InputError)) as caught:
            invoke(run_dir, export, "act.apply=false", override)
        assert message in str(caught.value) and "\n" not in str(caught.value)
        assert not (run_dir / "state.sqlite").exists() and not (run_dir / "actions").exists()


# --- the test split --------------------------------------------------------------------------------------
def test_the_test_split_is_a_share_of_trusted_labels_and_parking_leaves_annotators_only_the_selection(
    tmp_path
):
    export = example_export(tmp_path, n=60, labelled=20)
    run_dir = tmp_path / "project"
    invoke(run_dir, export, "act=encord_active_workaround", "filters.stages=null")
    labels, splits = stored(run_dir)
    state = platform(run_dir)
    unlabelled = [h for h in splits if h not in labels and splits[h] == "pool"]
    held = [h for h, s in splits.items() if s == "test"]
    assert held and all(state[h]["label_hash"] is not None for h in held)  # only labelled items are test items
    assert len(unlabelled) == 40  # every unlabelled item is in the pool
    selected = [r["data_hash"] for r in planned(run_dir, 0, "tag") if r["value"] != "parked"]
    assert len(selected) == 6
    # Annotators asked for 20 tasks get exactly the 6 selected: every other unlabelled task is parked.
    done = encord_export.annotate(run_dir / "platform", n=20)
    assert sorted(done) == sorted(selected)


def test_items_at_the_test_stage_are_the_test_set_and_never_candidates(tmp_path):
    export = example_export(tmp_path, n=60, labelled=20)
    project = OfflineProject.load(export)
    project.stages.insert(2, {"uuid": "00000000-0000-4000-8000-000000000001", "title": "Test",
                              "stage_type": "ANNOTATION"})
    project.write_project_json()
    waiting = sorted(h for h, r in project.records.items() if r["metadata"]["label_hash"] is None)
    for data_hash in waiting[:8]:
        project.place(data_hash, project.stage_by_title("Test"))
    for data_hash in waiting[:3]:
        project.simulate_annotation(data_hash, "digit", answers(export)[data_hash], stage="Test")
    project.save()
    run_dir = tmp_path / "project"
    invoke(run_dir, export, "act.apply=false", "filters.stages=null", "project.source.test_stage=Test",
           "project.source.test_fraction=0.0")
    _, splits = stored(run_dir)
    assert {h for h, s in splits.items() if s == "test"} == set(waiting[:8])
    assert not set(waiting[:8]) & {r["data_hash"] for r in record(run_dir, 0)["records"]}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["n_test_labeled"] == 3 and rows[0]["test_accuracy"] is not None


# --- label suspects --------------------------------------------------------------------------------------
SHARE = ("selection.relabel_share=0.5",)


def send_suspects_back(tmp_path: Path) -> tuple[Path, Path, list[str], dict[str, str]]:
    """A dry run and an applied round with half the budget on relabels; the suspects and their issues."""
    export = example_export(tmp_path, n=80, labelled=50, wrong=8)
    run_dir = tmp_path / "project"
    share = SHARE
    invoke(run_dir, export, "act.apply=false", *share)
    assert written(run_dir) == []  # a dry run writes nothing
    reopen, issues = planned(run_dir, 0, "reopen"), planned(run_dir, 0, "issue")
    suspects = [r["data_hash"] for r in reopen]
    assert len(suspects) == 3 and len(planned(run_dir, 0, "priority")) == 6  # 3 new labels, 3 relabels
    with (run_dir / "label_issues.csv").open() as handle:
        issue_rows = list(csv.DictReader(handle))
    by_hash = {r["item_id"]: r for r in issue_rows}
    comments = {r["data_hash"]: r["value"] for r in issues if r["issue_tags"] == ["label_issue"]}
    assert set(comments) == set(suspects)
    for data_hash in suspects:
        assert f"Label '{by_hash[data_hash]['given_label']}' looks wrong" in comments[data_hash]
        assert f"suggests '{by_hash[data_hash]['suggested_label']}'" in comments[data_hash]

    invoke(run_dir, export, *share)
    state = platform(run_dir)
    rows = {r["metadata"]["data_hash"]: r for r in json.loads((run_dir / "platform" / "label_rows.json").read_text())}
    assert all(state[h]["workflow_graph_node"]["title"] == "Annotate 1" for h in suspects)
    assert all(rows[h]["issues"][0]["comments"] == [comments[h]] for h in suspects)
    return export, run_dir, suspects, comments


@pytest.mark.slow
def test_label_suspects_go_back_to_annotation_with_an_issue_saying_why(tmp_path):
    _, run_dir, suspects, _ = send_suspects_back(tmp_path)
    assert record(run_dir, 0)["status"] == "applied"
    assert [w["kind"] for w in written(run_dir)][:2] == ["workflow_reopen", "set_priority"]


@pytest.mark.slow
def test_label_suspects_come_back_as_trusted_labels_and_are_not_sent_back_twice(tmp_path):
    export, run_dir, suspects, _ = send_suspects_back(tmp_path)
    share = SHARE
    before, _ = stored(run_dir)

    # Next round, before anyone looked again: the suspects' labels are not trusted, nor are they candidates.
    invoke(run_dir, export, "act.apply=false", *share)
    labels, _ = stored(run_dir)
    assert not set(suspects) & set(labels) and set(labels) == set(before) - set(suspects)
    assert not set(suspects) & {r["data_hash"] for r in record(run_dir, 1)["records"] if r["action"] != "issue"}

    # Annotators take the prioritised tasks (the suspects at 1.0) and correct the suspects; they come back as
    # trusted labels.
    key = answers(export)
    done = encord_export.annotate(run_dir / "platform", n=6)
    assert sorted(done) == sorted(r["data_hash"] for r in planned(run_dir, 0, "priority"))
    invoke(run_dir, export, "act.apply=false", *share)
    labels, _ = stored(run_dir)
    assert all(str(labels[h]) == key[h] for h in suspects)
    assert not set(suspects) & {r["data_hash"] for r in planned(run_dir, 1, "reopen")}  # never sent back twice


# --- Agent stages ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_an_agent_stage_routes_its_waiting_tasks_by_rank_retried_and_idempotent(tmp_path, faults):
    export = example_export(tmp_path, n=40, labelled=12)
    project = triage_workflow(OfflineProject.load(export))
    project.write_project_json()
    run_dir = tmp_path / "project"
    agent = ("filters.stages=[Triage]", "act.function.agent_stage=Triage", "act.function.agent_selected=annotate",
             "act.function.agent_rest=later")
    invoke(run_dir, export, "act.apply=false", *agent)
    assert written(run_dir) == []
    routes = planned(run_dir, 0, "route")
    chosen = sorted(r["data_hash"] for r in routes if r["value"] == "annotate")
    later = sorted(r["data_hash"] for r in routes if r["value"] == "later")
    assert len(chosen) == 6 and len(later) == 40 - 12 - 6
    assert sorted(r["data_hash"] for r in planned(run_dir, 0, "priority")) == chosen

    faults.fail("workflow_actions", times=1)  # the first routing request fails once, then goes through
    invoke(run_dir, export, *agent)
    assert record(run_dir, 0)["status"] == "applied" and len(faults.raised) == 1
    state = platform(run_dir)
    assert {state[h]["workflow_graph_node"]["title"] for h in chosen} == {"Annotate 1"}
    assert {state[h]["workflow_graph_node"]["title"] for h in later} == {"Later"}
    writes = len(written(run_dir))
    records = [dict(r, status="planned") for r in record(run_dir, 0)["records"] if r["action"] != "tag"]
    EncordPlatform(OfflineProject.load(run_dir / "platform"), "digit", tmp_path / "cache").apply(records)
    assert all(r["status"] == "applied" for r in records) and len(written(run_dir)) == writes


# --- stopping --------------------------------------------------------------------------------------------
def test_target_accuracy_stops_a_human_loop_before_anything_is_planned(tmp_path):
    export = example_export(tmp_path, n=60, labelled=20)
    run_dir = tmp_path / "project"
    summary = invoke(run_dir, export, "loop.target_accuracy=0.01")
    assert summary["stopped"] == "target_accuracy" and not (run_dir / "actions").exists()
    assert written(run_dir) == []


@pytest.mark.slow
def test_stabilizing_predictions_stop_a_human_loop_without_test_labels(tmp_path):
    export = example_export(tmp_path, n=60, labelled=20)
    run_dir = tmp_path / "project"
    stop = ("project.source.test_fraction=0.0", "loop.stop_set=20", "loop.stop_window=1", "loop.stop_agreement=0.01")
    assert invoke(run_dir, export, *stop)["stopped"] == "applied"
    encord_export.annotate(run_dir / "platform", n=6)
    summary = invoke(run_dir, export, *stop)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["test_accuracy"] is None and rows[-1]["stop_kappa"] >= 0.01
    assert summary["stopped"] == "stable_predictions" and not (run_dir / "actions" / "round_001.json").exists()


# --- original images -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_quality_metrics_see_each_image_at_its_own_size(tmp_path):
    export = example_export(tmp_path, n=30, labelled=10)
    wide = sorted(p.stem for p in (export / "images").glob("*.png"))[:5]
    for data_hash in wide:
        path = export / "images" / f"{data_hash}.png"
        with Image.open(path) as image:
            image.resize((84, 28)).save(path)
    run_dir = tmp_path / "project"
    invoke(run_dir, export, "act.apply=false", "metrics=quality")
    with (run_dir / "item_metrics.csv").open() as handle:
        metrics = {r["item_id"]: r for r in csv.DictReader(handle)}
    for data_hash, row in metrics.items():
        expected = (3.0, 2352.0) if data_hash in wide else (1.0, 784.0)
        assert (float(row["aspect_ratio"]), float(row["area"])) == expected
    with Image.open(export / "images" / f"{wide[0]}.png") as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert float(metrics[wide[0]]["brightness"]) == pytest.approx(pixels.mean() / 255.0, rel=1e-9)

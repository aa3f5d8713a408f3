"""Prioritisation end to end: metrics, filters, budget policies, tags, cold start, batch strategies."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from runner.assemble import assemble
from runner.errors import ConfigError
from tests.conftest import compose_config, run_in_process

DIGITS = ("+experiment=digits", "loop.rounds=2", "selection.budget=10")
NO_DIVERSITY = "metrics.names=[brightness,contrast,sharpness,blur,aspect_ratio,area,uniqueness]"


def run_ok(run_dir: Path, *overrides: str) -> None:
    run_in_process(run_dir, *DIGITS, *overrides)


def table(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def selected_ids(run_dir: Path) -> list[str]:
    return [row["item_id"] for p in sorted((run_dir / "selected").glob("*.csv")) for row in table(p)]


def digit_index(item_id: str) -> int:
    return int(item_id.split("-")[1])


def test_item_metrics_are_written_and_match_an_independent_computation(tmp_path):
    run_dir = tmp_path / "run"
    run_ok(run_dir, "metrics=quality", "loop.rounds=1")
    rows = table(run_dir / "item_metrics.csv")
    assert list(rows[0]) == ["item_id", "brightness", "contrast", "sharpness", "blur", "aspect_ratio", "area",
                             "uniqueness", "near_duplicate", "image_diversity"]
    assert len(rows) == 1797
    images = load_digits().images / 16.0  # the source scales 0..16 to 0..1; metrics see 0..255
    for row in rows[:50]:
        image = images[digit_index(row["item_id"])]
        assert abs(float(row["brightness"]) - image.mean()) < 1e-6
        assert abs(float(row["contrast"]) - image.std()) < 1e-6
        assert float(row["aspect_ratio"]) == 1.0 and float(row["area"]) == 64.0
    # Image Diversity scores only the pool items that were unlabelled when it ran: positions 0..n-1 over them
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        unlabelled = {r[0] for r in db.execute(
            "SELECT item_id FROM items WHERE split = 'pool' AND idx NOT IN (SELECT idx FROM labels WHERE round = -1)"
        )}
    diversity = {r["item_id"]: r["image_diversity"] for r in rows}
    assert all(v == "" for i, v in diversity.items() if i not in unlabelled)
    positions = sorted(int(float(diversity[i])) for i in unlabelled)
    assert positions == list(range(1500 - 20))


@pytest.mark.slow
def test_metric_range_filter_keeps_only_items_inside_the_range(tmp_path):
    run_dir = tmp_path / "run"
    run_ok(run_dir, "metrics=quality", NO_DIVERSITY, "+filters.metrics.brightness=[0.33,null]")
    brightness = {r["item_id"]: float(r["brightness"]) for r in table(run_dir / "item_metrics.csv")}
    chosen = selected_ids(run_dir)
    assert len(chosen) == 20 and all(brightness[i] >= 0.33 for i in chosen)
    unfiltered = tmp_path / "plain"
    run_ok(unfiltered, "metrics=quality", NO_DIVERSITY)
    assert any(brightness[i] < 0.33 for i in selected_ids(unfiltered))  # the filter had something to remove


def test_class_balanced_policy_spreads_the_budget_over_predicted_classes(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from plugins.models.sklearn_model import SklearnClassifier
    from runner.seeds import stage_seed

    run_dir = tmp_path / "run"
    run_ok(run_dir, "acquisition=margin", "selection.policy=class_balanced", "loop.rounds=1")
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        initial = db.execute("SELECT idx, label FROM labels WHERE round = -1 ORDER BY idx").fetchall()
        ids = [r[0] for r in db.execute("SELECT item_id FROM items ORDER BY idx")]
    # retrain round 0's model independently and predict the selected items' classes
    images = (load_digits().images / 16.0).astype(np.float32)
    order = np.array([digit_index(i) for i in ids])
    idx, labels = np.array(initial).T
    model = SklearnClassifier(LogisticRegression(C=1.0, max_iter=200), 10, stage_seed(0, 0, "train"))
    model.fit(images[order[idx]], labels)
    chosen = [digit_index(i) for i in selected_ids(run_dir)]
    predicted = model.predict_proba(images[chosen]).argmax(axis=1)
    assert sorted(predicted.tolist()) == list(range(10))  # budget 10 over 10 predicted classes: one each


def test_cost_budget_and_tags(tmp_path):
    run_dir = tmp_path / "run"
    # every digit costs its area, 64 units: a budget of 200 units buys 3 items per round
    run_ok(run_dir, "acquisition=margin", "metrics=quality", NO_DIVERSITY, "selection.cost=area",
           "selection.budget=200")
    assert [len(table(p)) for p in sorted((run_dir / "selected").glob("*.csv"))] == [3, 3]
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        tagged = sorted(r[0] for r in db.execute(
            "SELECT item_id FROM tags JOIN items USING (idx) WHERE tag = 'to_label_next'"))
    assert tagged == sorted(selected_ids(run_dir))


def test_cold_start_with_no_labels(tmp_path):
    run_dir = tmp_path / "run"
    run_ok(run_dir, "acquisition=typiclust", "loop.initial_labels=0")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in rows] == [0, 10, 20]
    assert rows[0]["test_accuracy"] is None and rows[1]["test_accuracy"] > 0.3
    assert "train" in rows[0]["seconds"]  # the stage ran (and had nothing to fit)
    truths = load_digits().target
    first = [digit_index(i) for i in selected_ids(run_dir)[:10]]
    assert len(set(truths[first])) >= 7  # typical points of 10 clusters cover most digits


@pytest.mark.slow
def test_batch_strategy_and_weighted_acquisition_run_end_to_end(tmp_path):
    run_ok(tmp_path / "coreset", "acquisition=coreset")
    chosen = selected_ids(tmp_path / "coreset")
    assert len(chosen) == len(set(chosen)) == 20
    ranks = [int(r["rank"]) for r in table(tmp_path / "coreset" / "selected" / "round_000.csv")]
    assert ranks == list(range(1, 11))

    run_ok(tmp_path / "weighted", "acquisition=weighted", "metrics=quality", NO_DIVERSITY)
    scores = [float(r["score"]) for r in table(tmp_path / "weighted" / "selected" / "round_000.csv")]
    assert all(-0.3 <= s <= 1.3 for s in scores) and scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("acquisition=coreset", "selection.policy=class_balanced"), "cannot reorder the batch strategy 'coreset'"),
        (("acquisition=coreset", "metrics=quality", "selection.cost=area"), "cannot budget the batch strategy"),
        (("acquisition=margin", "selection.policy=stratified", "metrics=quality", "selection.cost=area"),
         "needs a policy that takes a cost"),
        (("acquisition=margin", "metrics=quality", "selection.cost=nope"),
         "selection.cost='nope' is neither a computed metric"),
        (("selection.policy=best",), "selection.policy=best is not one of selection.policies (topk, class_balanced"),
        (("acquisition=weighted",), "weighs metric 'uniqueness'; add it to metrics.names"),
        (("+filters.metrics.brightness=[0.1,0.9]",), "filters.metrics.brightness: metric 'brightness' is not computed"),
        (("embedder=clip", "embedder.weights_path=/nowhere/clip.pt2"), "/nowhere/clip.pt2"),
        (("selection.budget=2.5",), "must be a whole number of items unless selection.cost is set"),
        (("filters.stages=[Annotate]",), "filters.stages needs a source with workflow stages"),
        (("filters.classes=[eleven]",), "filters.classes: 'eleven' is not a class of this project"),
        (("filters.classes=[1]", "loop.initial_labels=0", "acquisition=random"), "needs loop.initial_labels > 0"),
        (("selection.policy=class_balanced", "loop.initial_labels=0", "acquisition=random"), "needs predicted"),
        (("loop.mode=human",),
         "needs act=files (answers from a labels file) or a platform's act (one with act.apply and act.show), "
         "not act=oracle"),
        (("loop.mode=human", "act=encord"), "is not a platform project"),
    ],
)
def test_bad_prioritisation_configs_are_refused_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as caught:
        assemble(compose_config(*DIGITS, *overrides))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.exit_code == 2

"""The round driver with every labeller: simulated annotators (the oracle and those who err) and a labelling
platform (a test double here), through the same stages and the same stop policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plugins.actions.oracle import noisy
from plugins.sources.dataset import Dataset
from runner.app import run
from runner.errors import RunnerError
from runner.seeds import stage_rng
from runner.stopping import POOL_EXHAUSTED, ROUNDS, STABLE_PREDICTIONS, TARGET_ACCURACY, stop_reason
from runner.store import GLOBAL_ROUND, Store
from tests.conftest import compose_config

DIGITS = ("+experiment=digits", "loop.rounds=3", "selection.budget=10", "acquisition=margin")


def stored(run_dir: Path) -> dict:
    store = Store(run_dir / "state.sqlite")
    try:
        indices, labels = store.labeled()
        acquired = dict(store._conn.execute("SELECT idx, round FROM labels").fetchall())
        return {
            "labels": dict(zip(indices.tolist(), labels.tolist(), strict=True)),
            "truths": dict(zip(indices.tolist(), store.truths(indices).tolist(), strict=True)),
            "acquired": acquired,
            "selected": {r: store.selected_indices(r).tolist() for r in range(10)},
            "done": {(r, s) for r, s in store._conn.execute("SELECT round, stage FROM stages").fetchall()},
            "rounds": store.rounds(),
            "tags": store.tags(),
        }
    finally:
        store.close()


# --- the stop policy ---------------------------------------------------------------------------------------
class Rule:
    rounds = 5
    target_accuracy: float | None = 0.9
    stop_set = 10
    stop_agreement = 0.95
    stop_window = 2
    stop_when_stable = True


def test_the_stop_policy_asks_in_one_order():
    rows = [{"round": 0, "test_accuracy": 0.5}, {"round": 1, "test_accuracy": 0.95, "stop_kappa": 0.97},
            {"round": 2, "test_accuracy": 0.5, "stop_kappa": 0.96}]
    rule = Rule()
    # Round 1: the target beats the rounds and the empty pool; round 2: stable (mean kappa 0.965 >= 0.95).
    def none_left() -> int:
        return 0

    def unasked() -> int:
        raise AssertionError("the candidates are counted only when no other reason stops the rounds")

    assert stop_reason(rule, rows, 1, unasked) == TARGET_ACCURACY
    assert stop_reason(rule, rows, 2, unasked) == STABLE_PREDICTIONS
    rule.stop_when_stable = False
    assert stop_reason(rule, rows, 2, none_left) == POOL_EXHAUSTED
    assert stop_reason(rule, rows, 2, lambda: 7) is None
    rule.rounds = 2
    assert stop_reason(rule, rows, 2, unasked) == ROUNDS
    # Round 0 has no stop-set agreement yet (no round before it), and no accuracy counts as unmeasured.
    rule.target_accuracy = None
    assert stop_reason(rule, [{"round": 0, "test_accuracy": None}], 0, lambda: 3) is None


# --- simulated annotators ----------------------------------------------------------------------------------
def test_the_oracle_labels_every_selection_with_its_truth_until_the_rounds_end(tmp_path):
    summary = run(compose_config(*DIGITS), tmp_path, 1)
    found = stored(tmp_path)
    assert summary["stopped"] == ROUNDS and summary["rounds_evaluated"] == 4
    assert [r["n_labeled"] for r in found["rounds"]] == [20, 30, 40, 50]
    assert found["labels"] == found["truths"]
    for round_ in range(3):
        assert {i for i, r in found["acquired"].items() if r == round_} == set(found["selected"][round_])
        assert (round_, "act") in found["done"] and (round_, "select") in found["done"]
    # The last round is evaluated and stops before it scores: nothing selected, nothing labelled.
    assert found["selected"][3] == [] and (3, "evaluate") in found["done"] and (3, "score") not in found["done"]
    assert (GLOBAL_ROUND, "import") in found["done"] and (GLOBAL_ROUND, "finish") in found["done"]
    # Every selection is tagged in the store (selection.tag), and tags.csv says the same.
    assert sum("to_label_next" in tags for tags in found["tags"].values()) == 30


def test_annotators_who_err_give_the_labels_their_act_function_draws(tmp_path):
    config = compose_config(*DIGITS, "act=noisy_oracle", "act.function.flip_rate=0.3")
    run(config, tmp_path, 1)
    found = stored(tmp_path)
    wrong = 0
    for round_ in range(3):
        chosen = np.array(found["selected"][round_])
        truths = np.array([found["truths"][i] for i in chosen])
        # The same draw, made independently: the act stage's seeded generator for that round.
        expected = noisy(truths, stage_rng(config["seed"], round_, "act"), 10, flip_rate=0.3)
        assert [found["labels"][i] for i in chosen] == expected.tolist()
        wrong += int((expected != truths).sum())
    assert wrong > 0  # 30 labels at a flip rate of 0.3: the draw above does flip some


@pytest.mark.slow
def test_a_pool_the_filters_empty_stops_the_rounds_in_simulation(tmp_path):
    summary = run(compose_config(*DIGITS, "metrics=quality", "+filters.metrics.brightness=[2,3]"), tmp_path, 1)
    assert summary["stopped"] == POOL_EXHAUSTED and summary["rounds_evaluated"] == 1
    assert stored(tmp_path)["selected"][0] == []


# --- a labelling platform ----------------------------------------------------------------------------------
class FakePlatform:
    """A platform holding digits: the first ``labelled`` items carry trusted labels, the first ``held`` of those
    are its test split; ``fail`` names items whose actions the platform refuses."""

    identity_keys = ("key",)

    def __init__(self, n: int = 300, labelled: int = 60, held: int = 20) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        self.name = "fake"
        self.images = (digits.images[:n] / 16.0).astype(np.float32)
        self.truth = digits.target[:n].astype(np.int64)
        self.ids = np.array([f"item-{i:03d}" for i in range(n)])
        self.labels = np.where(np.arange(n) < labelled, self.truth, -1)
        self.split = np.where(np.arange(n) < held, "test", "pool")
        self.applied: list[dict] = []
        self.fail: set[str] = set()

    def read(self) -> Dataset:
        extra = {"title": self.ids.astype(object), "stage": np.where(self.labels >= 0, "Complete", "Annotate")}
        return Dataset(self.ids, self.images, self.labels.copy(), [str(d) for d in range(10)], self.split, extra)

    def workflow(self) -> dict[str, dict]:
        return {"Annotate": {"kind": "ANNOTATION"}, "Complete": {"kind": "DONE"}}

    def apply(self, records: list[dict], checkpoint) -> None:
        for record in records:
            if record["status"] == "applied":
                continue
            failed = record["data_hash"] in self.fail
            record.update(status="failed" if failed else "applied", error="refused" if failed else None)
            if not failed:
                self.applied.append(dict(record))
        checkpoint()

    def annotate(self, ids: list[str]) -> None:
        for item in ids:
            i = int(np.flatnonzero(self.ids == item)[0])
            self.labels[i] = self.truth[i]


PLATFORMS: dict[str, FakePlatform] = {}


def fake_platform(key: str) -> FakePlatform:
    return PLATFORMS[key]


def plan_priorities(selected: list[dict], rest: list[dict], parked: list[dict], suspects: list[dict],
                    workflow: dict, round_: int, floor: float = 0.5) -> list[dict]:
    """A priority by rank for each selected item, and a tag: the least a platform plan holds."""
    records = []
    for item in selected:
        priority = 1.0 - (item["rank"] - 1) * (1.0 - floor) / max(len(selected) - 1, 1)
        for action, value in (("priority", round(priority, 6)), ("tag", f"round_{round_:03d}")):
            records.append({"data_hash": item["data_hash"], "title": item["title"], "stage": item["stage"],
                            "action": action, "value": value, "rank": item["rank"], "status": "planned",
                            "error": None})
    return records


def platform_config(key: str, apply: bool, *overrides: str) -> dict:
    config = compose_config("+experiment=digits", "loop.mode=human", "acquisition=margin", "selection.budget=8",
                            "loop.initial_labels=0", "allowed_packages=[tests]", *overrides)
    config["project"] = {"name": "fake", "source": {"_target_": "tests.test_rounds.fake_platform", "key": key}}
    config["act"] = {"name": "priorities", "function": {"_target_": "tests.test_rounds.plan_priorities"},
                     "apply": apply, "show": 2}
    return config


@pytest.fixture
def platform():
    PLATFORMS["p"] = FakePlatform()
    yield PLATFORMS["p"]
    PLATFORMS.pop("p", None)


def plan(run_dir: Path, round_: int) -> dict:
    return json.loads((run_dir / "actions" / f"round_{round_:03d}.json").read_text())


def test_a_platform_round_is_planned_shown_and_applied_only_when_asked(tmp_path, platform):
    dry = run(platform_config("p", apply=False), tmp_path, 1)
    assert dry["stopped"] == "dry_run" and dry["mode"] == "human" and dry["open_round"] == 0
    planned = plan(tmp_path, 0)
    selected = [r["data_hash"] for r in planned["records"] if r["action"] == "priority"]
    assert len(selected) == 8 and planned["status"] == "planned" and platform.applied == []
    found = stored(tmp_path)
    assert (0, "select") in found["done"] and (0, "act") not in found["done"]
    # Trusted labels of the pool only: the 20 test items are measured on, never trained on.
    assert len(found["labels"]) == 40 and found["rounds"][0]["n_test_labeled"] == 20
    assert found["rounds"][0]["n_candidates"] == 240

    applied = run(platform_config("p", apply=True), tmp_path, 1)
    assert applied["stopped"] == "applied" and applied["open_round"] == 1
    assert [r["data_hash"] for r in platform.applied if r["action"] == "priority"] == selected  # the same plan
    assert plan(tmp_path, 0)["status"] == "applied"
    found = stored(tmp_path)
    assert (0, "act") in found["done"]
    tagged = {i for i, tags in found["tags"].items() if "round_000" in tags}
    assert sorted(platform.ids[list(tagged)].tolist()) == sorted(selected)

    # Annotators label the selection; the next invocation pulls those labels (acquired in round 0) and plans
    # round 1 from them.
    platform.annotate(selected)
    nxt = run(platform_config("p", apply=False), tmp_path, 1)
    found = stored(tmp_path)
    index = {item: i for i, item in enumerate(platform.ids)}
    assert {found["acquired"][index[h]] for h in selected} == {0}
    assert nxt["open_round"] == 1 and [r["n_labeled"] for r in found["rounds"]] == [40, 48]
    assert not set(selected) & {r["data_hash"] for r in plan(tmp_path, 1)["records"]}


@pytest.mark.slow
def test_labels_that_arrive_before_a_plan_is_applied_plan_the_round_again(tmp_path, platform):
    run(platform_config("p", apply=False), tmp_path, 1)
    first = [r["data_hash"] for r in plan(tmp_path, 0)["records"] if r["action"] == "priority"]
    platform.annotate(first[:3])
    run(platform_config("p", apply=False), tmp_path, 1)
    again = [r["data_hash"] for r in plan(tmp_path, 0)["records"] if r["action"] == "priority"]
    assert not set(first[:3]) & set(again) and stored(tmp_path)["rounds"][0]["n_labeled"] == 43


def test_a_plan_applied_in_part_leaves_the_round_open_and_the_next_invocation_finishes_it(tmp_path, platform):
    run(platform_config("p", apply=False), tmp_path, 1)
    selected = [r["data_hash"] for r in plan(tmp_path, 0)["records"] if r["action"] == "priority"]
    platform.fail = {selected[0]}
    with pytest.raises(RunnerError, match=r"1 of 16 actions of round 0 failed"):
        run(platform_config("p", apply=True), tmp_path, 1)
    record = plan(tmp_path, 0)
    assert record["status"] == "partial"
    statuses = {(r["data_hash"], r["action"]): r["status"] for r in record["records"]}
    assert statuses[(selected[0], "priority")] == "failed" and statuses[(selected[0], "tag")] == "planned"
    found = stored(tmp_path)
    assert (0, "act") not in found["done"]  # the stage stays open
    # Tags follow the platform: the refused item is not tagged, the others are.
    tagged = {platform.ids[i] for i, tags in found["tags"].items() if "round_000" in tags}
    assert tagged == set(selected[1:])

    platform.fail = set()
    done = run(platform_config("p", apply=True), tmp_path, 1)
    assert done["stopped"] == "applied" and (0, "act") in stored(tmp_path)["done"]
    # Each action reached the platform once.
    assert sorted(r["data_hash"] for r in platform.applied if r["action"] == "priority") == sorted(selected)


@pytest.mark.slow
def test_the_last_round_is_evaluated_and_stops_on_a_platform_too(tmp_path, platform):
    run(platform_config("p", True, "loop.rounds=1"), tmp_path, 1)
    summary = run(platform_config("p", True, "loop.rounds=1"), tmp_path, 1)
    assert summary["stopped"] == ROUNDS and summary["open_round"] == 1
    found = stored(tmp_path)
    assert (1, "evaluate") in found["done"] and (1, "score") not in found["done"]


@pytest.mark.slow
def test_a_pool_the_filters_empty_stops_a_platform_round_before_it_plans(tmp_path, platform):
    config = platform_config("p", False, "metrics=quality", "+filters.metrics.brightness=[2,3]")
    summary = run(config, tmp_path, 1)
    assert summary["stopped"] == POOL_EXHAUSTED and not (tmp_path / "actions").exists()
